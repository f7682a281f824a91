#!/usr/bin/env bash
# The environments of the compatibility matrix, one per half of a combination
# (CKAN 2.10 pins SQLAlchemy 1.4 and old packages that the hub side cannot
# live with, so CKAN and the hub get environments of their own):
#
#   .venvs/ckan2.10  .venvs/ckan2.11  .venvs/ckan2.12
#       CKAN + this plugin + the test tools (CKAN's pytest plugin lives here)
#   .venvs/hub5  .venvs/hub6
#       JupyterHub + the bridge + JupyterLab + the test tools (and CKAN 2.12,
#       whose pytest plugin the suite loads)
#
# Each is installed exactly from constraints/<ckan-X.Y|hub-N>.txt, then this
# package is installed editable against those pins. An environment is
# (re)installed only when it is missing or its constraints file, setup.py or
# dev-requirements.txt changed; the versions in use are printed either way.
#
#   dev/environments.sh                   # all five
#   dev/environments.sh ckan2.10 hub5     # some
#   dev/environments.sh --freeze hub6     # after an upgrade: rewrite constraints/hub-6.txt
#                                         # from the working .venvs/hub6
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-/usr/bin/python3}   # Debian's: session servers run as another user
ALL="ckan2.10 ckan2.11 ckan2.12 hub5 hub6"
export PIP_DISABLE_PIP_VERSION_CHECK=1

constraints_of() {
    case "$1" in
        ckan2.*) echo "constraints/ckan-${1#ckan}.txt" ;;
        hub[0-9]*) echo "constraints/hub-${1#hub}.txt" ;;
        *) echo "environments: unknown environment '$1' (one of: $ALL)" >&2; return 2 ;;
    esac
}

stamp_of() {
    cat "$(constraints_of "$1")" setup.py dev-requirements.txt | sha256sum | cut -d' ' -f1
}

versions() {
    .venvs/$1/bin/python - "$1" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
def v(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return "-"
print(f"environments: .venvs/{sys.argv[1]}: CKAN {v('ckan')}, JupyterHub {v('jupyterhub')}, "
      f"SQLAlchemy {v('SQLAlchemy')}, Python {sys.version.split()[0]}")
PY
}

ensure() {
    local name=$1 venv=.venvs/$1 file want
    file=$(constraints_of "$name")
    [ -f "$file" ] || { echo "environments: $file is missing" >&2; return 2; }
    want=$(stamp_of "$name")
    if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.installed" 2>/dev/null)" = "$want" ]; then
        lab_files "$name"
        versions "$name"
        return
    fi
    echo "environments: installing $venv from $file"
    [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
    # exactly the tested versions, then this package against them (a
    # dependency added to setup.py since the freeze is resolved within the pins)
    "$venv/bin/pip" install -q --no-deps -r "$file"
    case "$name" in
        ckan*) "$venv/bin/pip" install -q -c "$file" -e . \
                   -r <(grep -v '^ckan\[' dev-requirements.txt) ;;
        hub*)  "$venv/bin/pip" install -q -c "$file" -e ".[hub,session]" -r dev-requirements.txt ;;
    esac
    "$venv/bin/pip" check >/dev/null || { "$venv/bin/pip" check; return 1; }
    echo "$want" > "$venv/.installed"
    lab_files "$name"
    versions "$name"
}

# The sessions' JupyterLab files into a hub environment: an editable install
# leaves setup.py's data_files out; copied each time so they follow edits.
lab_files() {
    case "$1" in hub*) ".venvs/$1/bin/python" -m jupyterhub_service.lab_files >/dev/null ;; esac
}

freeze() {
    local name=$1 file
    file=$(constraints_of "$name")
    {
        echo "# .venvs/$name as tested; dev/environments.sh installs exactly these."
        echo "# Regenerate with: dev/environments.sh --freeze $name"
        ".venvs/$name/bin/pip" freeze --all --exclude-editable | grep -v '^pkg[-_]resources=='
    } > "$file"
    echo "environments: wrote $file ($(grep -vc '^#' "$file") pins)"
}

if [ "${1:-}" = "--freeze" ]; then
    shift
    for name in "${@:-$ALL}"; do freeze "$name"; done
    exit 0
fi
mkdir -p .venvs
for name in ${@:-$ALL}; do ensure "$name"; done
