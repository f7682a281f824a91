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
# Environment: CKAN_VERSION (2.12) and JUPYTERHUB_VERSION (6), a supported
# line (2.10, 2.11, 2.12; 5, 6: the version constraints/ pins for it) or an
# exact version (2.11.6, 5.5.4), passed to the Dockerfiles as build arguments
# (the singleuser image gets the hub's version); FORCE=1 rebuilds; NO_CACHE=1
# builds without the build cache; IMAGE_PREFIX (ckanext-jupyternotebook),
# IMAGE_TAG (latest); BASE_IMAGE forces a base; PUBLIC_BASE_IMAGE
# (python:3.11-slim-bookworm).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PREFIX="${IMAGE_PREFIX:-ckanext-jupyternotebook}"
TAG="${IMAGE_TAG:-latest}"
PUBLIC_BASE="${PUBLIC_BASE_IMAGE:-python:3.11-slim-bookworm}"
LOCAL_BASE="${BASE_IMAGE_LOCAL:-$PREFIX/base:bookworm}"
FORCE="${FORCE:-0}"

# A line (2.11, 5) is the exact version its constraints file pins, so the
# images hold what the tests ran; an exact version is taken as it is.
exact_version() {  # PACKAGE LINE-OR-VERSION CONSTRAINTS-FILE
    local pinned
    if [[ "$2" =~ ^[0-9]+(\.[0-9]+)?$ && -f "$3" ]]; then
        pinned=$(grep -i "^$1==" "$3" | cut -d= -f3)
        [[ -n "$pinned" ]] || { echo "images: $3 pins no $1" >&2; return 1; }
        echo "$pinned"
    elif [[ "$2" =~ ^[0-9]+\.[0-9]+\.[0-9]+([a-z0-9.]*)$ ]]; then
        echo "$2"
    else
        echo "images: $1 version '$2' is neither a supported line nor an exact version" >&2
        return 1
    fi
}
CKAN_LINE="${CKAN_VERSION:-2.12}"
HUB_LINE="${JUPYTERHUB_VERSION:-6}"
CKAN_EXACT="$(exact_version ckan "$CKAN_LINE" "$REPO/constraints/ckan-$CKAN_LINE.txt")"
HUB_EXACT="$(exact_version jupyterhub "$HUB_LINE" "$REPO/constraints/hub-$HUB_LINE.txt")"

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
# sources and the versions it was built with>; an image without the current
# tag is rebuilt (the dependency layers come from the build cache, so a code
# change rebuilds in seconds, and going back to versions built before reuses
# their layers). A tag, not a --label: the classic builder puts labels in
# every step, breaking the cache.
sources() {
    case "$1" in
        singleuser) echo "docker/singleuser jupyterhub_service/__init__.py jupyterhub_service/busy_kernels.py jupyterhub_service/labextension" ;;
        db|redis) echo "docker/$1" ;;
        hub|ckan) echo "docker/$1 setup.py README.md ckanext jupyterhub_service" ;;
    esac
}
# the versions an image is built with (its build arguments)
build_args() {
    case "$1" in
        singleuser|hub) echo "JUPYTERHUB_VERSION=$HUB_EXACT" ;;
        ckan) echo "CKAN_VERSION=$CKAN_EXACT" ;;
    esac
}
version_tag() {
    case "$1" in
        singleuser|hub) echo "jupyterhub-$HUB_EXACT" ;;
        ckan) echo "ckan-$CKAN_EXACT" ;;
    esac
}
source_hash() {
    # shellcheck disable=SC2046
    (cd "$REPO" && { find $(sources "$1") -type f ! -name '*.pyc' ! -path '*/__pycache__/*' \
        ! -path '*/tests/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; build_args "$1"; } \
        | sha256sum | cut -c1-16)
}

LOGS="$HERE/.build"
mkdir -p "$LOGS"
# one build at a time (CI builds in the background while the docker tests
# may ask for the same images): a second run waits, then finds them built
exec 9>"$LOGS/.lock"
flock 9

# build NAME DOCKERFILE CONTEXT  (run in the background; the log is in docker/.build/)
build() {
    local name="$1" dockerfile="$2" context="$3" image="$PREFIX/$1:$TAG" t0 arg
    local args=(--build-arg "BASE_IMAGE=$BASE")
    for arg in $(build_args "$name"); do args+=(--build-arg "$arg"); done
    t0=$SECONDS
    # shellcheck disable=SC2046
    if docker build --pull=false $([[ "${NO_CACHE:-0}" == 1 ]] && echo --no-cache) \
            "${args[@]}" \
            -f "$dockerfile" -t "$image" "$context" >"$LOGS/$name.log" 2>&1; then
        local src_tag="src-$(source_hash "$name")" old
        for old in $(docker images --format '{{.Tag}}' "$PREFIX/$name" | grep '^src-' || true); do
            # an image still used by a container keeps its old tag
            [[ "$old" == "$src_tag" ]] || docker rmi "$PREFIX/$name:$old" >/dev/null 2>&1 || true
        done
        docker tag "$image" "$PREFIX/$name:$src_tag"
        # a tag per version keeps the other versions' images, whose layers
        # are the build cache when they are asked for again (CI's matrix)
        [[ -z "$(version_tag "$name")" ]] || docker tag "$image" "$PREFIX/$name:$(version_tag "$name")"
        echo "images: built $image ($(build_args "$name" | tr '\n' ' ')) in $((SECONDS - t0))s"
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
echo "images: CKAN $CKAN_EXACT, JupyterHub $HUB_EXACT"
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
