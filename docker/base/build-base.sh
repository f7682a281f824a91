#!/usr/bin/env bash
# Build a minimal Debian bookworm base image from Debian packages alone
# (debootstrap + docker import), for machines where no registry answers.
# Skips the build when the image already exists, unless FORCE=1.
set -euo pipefail

IMAGE="${BASE_IMAGE_LOCAL:-ckanext-jupyternotebook/base:bookworm}"
SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [[ "${FORCE:-0}" != 1 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "base: $IMAGE exists, skipping"
    exit 0
fi

if [[ $EUID -ne 0 ]]; then
    echo "base: debootstrap needs root" >&2
    exit 1
fi
command -v debootstrap >/dev/null || { echo "base: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }

workdir="$(mktemp -d "${TMPDIR:-/tmp}/ckanext-jn-base.XXXXXX")"
trap 'rm -rf "$workdir"' EXIT
rootfs="$workdir/rootfs"

echo "base: debootstrap $SUITE from $MIRROR"
# minbase: only Essential + apt; python3-venv brings ensurepip so every venv gets pip.
debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates \
    "$SUITE" "$rootfs" "$MIRROR" >"$workdir/debootstrap.log" 2>&1 \
    || { tail -40 "$workdir/debootstrap.log" >&2; exit 1; }

# Same apt sources a stock debian:bookworm image has, so Dockerfiles can apt-get install.
cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
SOURCES
# A host that reaches the package mirrors through a TLS-inspecting proxy has
# its own CA certificates; the base trusts the same ones, so apt and pip work
# inside `docker build` as they do on the host. Set EXTRA_CA_DIR= to skip.
extra_ca_dir="${EXTRA_CA_DIR-/usr/local/share/ca-certificates}"
if [[ -n "$extra_ca_dir" ]] && compgen -G "$extra_ca_dir/*.crt" >/dev/null; then
    cp "$extra_ca_dir"/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
    echo "base: trusting $(ls "$extra_ca_dir"/*.crt | wc -l) extra CA certificate(s) from $extra_ca_dir"
fi
# pip from a venv (ensurepip) reads this too.
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"

# Keep images lean, like the official Debian images do.
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
APT
echo 'APT::Install-Recommends "false";' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
       "$rootfs"/usr/share/locale/* "$rootfs"/tmp/*
find "$rootfs" -name __pycache__ -type d -prune -exec rm -rf {} +

echo "base: docker import -> $IMAGE"
tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase $SUITE + python3" \
    - "$IMAGE" >/dev/null
echo "base: built $IMAGE"
