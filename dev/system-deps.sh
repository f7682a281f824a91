#!/usr/bin/env bash
# Debian packages for the dev stack and the tests, installed only when missing.
set -euo pipefail
packages=(
    postgresql redis-server libpq-dev libmagic1 build-essential python3-venv python3-dev
    nodejs node-configurable-http-proxy
    chromium chromium-driver
    debootstrap curl git iptables
    nginx-light
)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "system-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
