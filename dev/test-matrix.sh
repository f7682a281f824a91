#!/usr/bin/env bash
# `make test-matrix`: the compatibility matrix's smoke slice on every
# supported combination but the default (CKAN 2.12 + JupyterHub 6, on which
# `make test` runs the whole suite). Each half runs in its own environment
# (dev/environments.sh, constraints/):
#
#   CKAN side, once per older CKAN line (it never talks to a hub):
#     test_views, test_preview, test_admin, tests/reports in .venvs/ckanX.Y
#   stack side, per combination: a guest launch, a private launch, the
#     preview, the admin settings and the docker spawner, through a real
#     CKAN X.Y portal (.venvs/ckanX.Y) and hub (.venvs/hubN), and what the
#     bridge does differently per hub version (test_hub_versions)
#   hub5-to-hub6: hub 6 migrates a database hub 5 served (test_hub_upgrade)
#
#   dev/test-matrix.sh                           # the whole matrix
#   MATRIX="ckan2.10-hub6" dev/test-matrix.sh     # one combination
#
# Every step runs even when one before it failed; the summary at the end
# gives each step's result and time, and the exit status is non-zero when
# any step failed or ran no test. A CKAN 2.12 portal runs from the hub's
# environment, which holds exactly CKAN 2.12.0 (constraints/hub-N.txt).
set -uo pipefail
cd "$(dirname "$0")/.."

MATRIX=${MATRIX:-"ckan2.10-hub5 ckan2.10-hub6 ckan2.11-hub5 ckan2.11-hub6 ckan2.12-hub5"}
DEFAULT_CKAN=ckan2.12
PYTEST_ARGS=${PYTEST_ARGS:-}
CKAN_TESTS=(ckanext/jupyternotebook/tests/test_views.py
            ckanext/jupyternotebook/tests/test_preview.py
            ckanext/jupyternotebook/tests/test_admin.py
            # the report tables on SQLAlchemy 1.4 (2.10, 2.11) and 2.0
            ckanext/jupyternotebook/tests/reports)
STACK_TESTS=(tests/e2e/test_launch_flow.py tests/e2e/test_notebooks_and_admin.py
             tests/docker/test_docker_launch.py jupyterhub_service/tests/test_hub_versions.py)
STACK_K="anonymous_visitor_lands or private_dataset_but_a_member or preview_renders \
or admin_page or limited_container or test_hub_versions"
LOGS=.dev/test-matrix
mkdir -p "$LOGS"

summary=()
failed=0

# step LABEL COMMAND...: run it, keep its log, note its result and time
step() {
    local label=$1 t0=$SECONDS log rc result
    shift
    log="$LOGS/$label.log"
    echo "test-matrix: $label"
    "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    # pytest's closing line ("117 passed, 3 deselected in 101.2s")
    result=$(grep -E '(passed|failed|errors?|no tests ran)( |,|$)' "$log" | tail -1 | tr -d '=' \
             | sed -E 's/^ +| +$//g; s/ in [0-9.]+s.*$//')
    [ "$rc" = 0 ] || failed=1
    summary+=("$(printf '%-28s %-6s %5ss  %s' "$label" "$([ "$rc" = 0 ] && echo ok || echo FAILED)" \
        "$((SECONDS - t0))" "${result:-$([ "$rc" = 0 ] || echo "exit status $rc")}")")
}

db_suffix() { echo "_$(echo "${1#ckan}" | tr . _)"; }

docker_marker=()
if ! docker info >/dev/null 2>&1; then
    echo "test-matrix: no Docker engine answers; skipping the tests marked docker"
    docker_marker=(-m "not docker")
fi

# the environments, each timed (installed only when missing or stale)
envs=()
for combo in $MATRIX; do
    ckan=${combo%-*}; hub=${combo#*-}
    case " ${envs[*]} " in *" $hub "*) ;; *) envs+=("$hub") ;; esac
    [ "$ckan" = "$DEFAULT_CKAN" ] || case " ${envs[*]} " in *" $ckan "*) ;; *) envs+=("$ckan") ;; esac
done
for env in "${envs[@]}"; do
    step "env-$env" bash dev/environments.sh "$env"
done

# the CKAN side, once per older CKAN line (CKAN 2.12's is in `make test`)
done_lines=" "
for combo in $MATRIX; do
    ckan=${combo%-*}
    [ "$ckan" != "$DEFAULT_CKAN" ] && [[ "$done_lines" != *" $ckan "* ]] || continue
    done_lines+="$ckan "
    suffix=$(db_suffix "$ckan")
    CKAN_DATABASES="ckan_test$suffix" bash dev/services.sh >/dev/null
    # shellcheck disable=SC2086
    step "$ckan" env CKAN_SQLALCHEMY_URL="postgresql://ckan_default:pass@localhost/ckan_test$suffix" \
        ".venvs/$ckan/bin/pytest" --ckan-ini=test.ini -p no:cacheprovider "${CKAN_TESTS[@]}" $PYTEST_ARGS
done

# the stack side, per combination
for combo in $MATRIX; do
    ckan=${combo%-*}; hub=${combo#*-}
    suffix=$(db_suffix "$ckan")
    ckan_venv=.venvs/$ckan
    [ "$ckan" != "$DEFAULT_CKAN" ] || ckan_venv=.venvs/$hub
    CKAN_DATABASES="ckan_e2e$suffix ckan_docker$suffix" bash dev/services.sh >/dev/null
    # shellcheck disable=SC2086
    step "$combo" env CKAN_VENV="$ckan_venv" CKAN_DB_SUFFIX="$suffix" \
        ".venvs/$hub/bin/pytest" --ckan-ini=test.ini -p no:cacheprovider "${STACK_TESTS[@]}" \
        -k "$STACK_K" "${docker_marker[@]}" $PYTEST_ARGS
done

# a deployment moving from hub 5 to hub 6 (its database migrated at start)
if [[ " ${envs[*]} " == *" hub5 "* && " ${envs[*]} " == *" hub6 "* ]]; then
    # shellcheck disable=SC2086
    step hub5-to-hub6 .venvs/hub6/bin/pytest --ckan-ini=test.ini -p no:cacheprovider \
        jupyterhub_service/tests/test_hub_upgrade.py $PYTEST_ARGS
fi

echo
echo "test-matrix: summary (logs in $LOGS/)"
printf '  %s\n' "${summary[@]}"
exit $failed
