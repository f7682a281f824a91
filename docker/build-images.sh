#!/usr/bin/env bash
# Build every image the compose stack and the docker tests need (`make images`).
#
#   bash docker/build-images.sh [IMAGE...]     IMAGE: singleuser hub ckan db redis
#
# With no argument: singleuser, hub and ckan, plus the db and redis stand-ins
# when the public postgres/redis images cannot be had. An image that exists
# and was built from the same sources (a label holds their hash) is reused
# unless FORCE=1. The Dockerfiles build FROM the public
# python:3.11-slim-bookworm when it is present or can be pulled; otherwise
# FROM a local base made by debootstrap + docker import (docker/base/).
#
# Environment: FORCE=1 rebuilds; NO_CACHE=1 builds without the build cache;
# IMAGE_PREFIX (ckanext-jupyternotebook), IMAGE_TAG (latest); BASE_IMAGE
# forces a base; PUBLIC_BASE_IMAGE (python:3.11-slim-bookworm).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PREFIX="${IMAGE_PREFIX:-ckanext-jupyternotebook}"
TAG="${IMAGE_TAG:-latest}"
PUBLIC_BASE="${PUBLIC_BASE_IMAGE:-python:3.11-slim-bookworm}"
LOCAL_BASE="${BASE_IMAGE_LOCAL:-$PREFIX/base:bookworm}"
FORCE="${FORCE:-0}"

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# Pull a public image when no copy is here; false when no registry answers.
can_have() {
    have_image "$1" && return 0
    timeout "${PULL_TIMEOUT:-300}" docker pull -q "$1" >/dev/null 2>&1
}

base_image() {
    if [[ -n "${BASE_IMAGE:-}" ]]; then
        echo "$BASE_IMAGE"
    elif can_have "$PUBLIC_BASE"; then
        echo "$PUBLIC_BASE"
    else
        echo "images: no registry answers; using the debootstrap base $LOCAL_BASE" >&2
        BASE_IMAGE_LOCAL="$LOCAL_BASE" bash "$HERE/base/build-base.sh" >&2
        echo "$LOCAL_BASE"
    fi
}

# What each image is built from. Each build is also tagged src-<hash of its
# sources>; an image without the current tag is rebuilt (the dependency layers
# come from the build cache, so a code change rebuilds in seconds). A tag, not
# a --label: the classic builder puts labels in every step, breaking the cache.
sources() {
    case "$1" in
        singleuser) echo "docker/singleuser jupyterhub_service/__init__.py jupyterhub_service/busy_kernels.py jupyterhub_service/labextension" ;;
        db|redis) echo "docker/$1" ;;
        hub|ckan) echo "docker/$1 setup.py README.md ckanext jupyterhub_service" ;;
    esac
}
source_hash() {
    # shellcheck disable=SC2046
    (cd "$REPO" && find $(sources "$1") -type f ! -name '*.pyc' ! -path '*/__pycache__/*' \
        ! -path '*/tests/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

LOGS="$HERE/.build"
mkdir -p "$LOGS"

# build NAME DOCKERFILE CONTEXT  (run in the background; the log is in docker/.build/)
build() {
    local name="$1" dockerfile="$2" context="$3" image="$PREFIX/$1:$TAG" t0
    t0=$SECONDS
    # shellcheck disable=SC2046
    if docker build --pull=false $([[ "${NO_CACHE:-0}" == 1 ]] && echo --no-cache) \
            --build-arg "BASE_IMAGE=$BASE" \
            -f "$dockerfile" -t "$image" "$context" >"$LOGS/$name.log" 2>&1; then
        local src_tag="src-$(source_hash "$name")" old
        for old in $(docker images --format '{{.Tag}}' "$PREFIX/$name" | grep '^src-' || true); do
            # an image still used by a container keeps its old tag
            [[ "$old" == "$src_tag" ]] || docker rmi "$PREFIX/$name:$old" >/dev/null 2>&1 || true
        done
        docker tag "$image" "$PREFIX/$name:$src_tag"
        echo "images: built $image in $((SECONDS - t0))s"
    else
        echo "images: building $image failed; the end of $LOGS/$name.log:" >&2
        tail -40 "$LOGS/$name.log" >&2
        return 1
    fi
}

wanted=("$@")
if [[ ${#wanted[@]} -eq 0 ]]; then
    wanted=(singleuser hub ckan)
    can_have "${POSTGRES_IMAGE:-postgres:16-bookworm}" || wanted+=(db)
    can_have "${REDIS_IMAGE:-redis:7-bookworm}" || wanted+=(redis)
fi

start=$SECONDS
todo=()
for name in "${wanted[@]}"; do
    case "$name" in
        singleuser|hub|ckan|db|redis) ;;
        *) echo "images: unknown image $name (singleuser hub ckan db redis)" >&2; exit 2 ;;
    esac
    if [[ "$FORCE" != 1 ]] && have_image "$PREFIX/$name:$TAG" \
            && have_image "$PREFIX/$name:src-$(source_hash "$name")"; then
        echo "images: $PREFIX/$name:$TAG is up to date, skipping (FORCE=1 rebuilds)"
    else
        todo+=("$name")
    fi
done

if [[ ${#todo[@]} -gt 0 ]]; then
    BASE="$(base_image)"
    echo "images: building ${todo[*]} FROM $BASE"
    # The builds wait mostly on downloads: run them side by side.
    pids=()
    for name in "${todo[@]}"; do
        case "$name" in
            singleuser) build singleuser "$HERE/singleuser/Dockerfile" "$REPO" & ;;
            hub)        build hub "$HERE/hub/Dockerfile" "$REPO" & ;;
            ckan)       build ckan "$HERE/ckan/Dockerfile" "$REPO" & ;;
            db)         build db "$HERE/db/Dockerfile" "$HERE/db" & ;;
            redis)      build redis "$HERE/redis/Dockerfile" "$HERE/redis" & ;;
        esac
        pids+=($!)
    done
    failed=0
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    [[ $failed == 0 ]] || { echo "images: some builds failed" >&2; exit 1; }
fi
echo "images: done in $((SECONDS - start))s"
docker images --filter "reference=$PREFIX/*:$TAG" --filter "reference=$LOCAL_BASE" --format '  {{.Repository}}:{{.Tag}}\t{{.Size}}'
