#!/usr/bin/env bash
# Shared system services for `make dev` and `make test`: PostgreSQL and Redis
# from Debian packages. Idempotent: installs only what is missing, starts only
# what is not running, and leaves a running system alone.
set -euo pipefail

DB_USER="${CKAN_DB_USER:-ckan_default}"
DB_PASS="${CKAN_DB_PASS:-pass}"
DATABASES="${CKAN_DATABASES:-ckan_test ckan_e2e ckan_docker ckan_dev ckan_bench}"

missing=()
for pkg in postgresql redis-server libpq-dev libmagic1; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "services: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
fi

if ! pg_isready -q -h localhost; then
    echo "services: starting PostgreSQL"
    # pg_ctlcluster works with and without systemd (containers)
    for cluster in $(pg_lsclusters -h | awk '{print $1 "/" $2}'); do
        pg_ctlcluster "${cluster%/*}" "${cluster#*/}" start || true
    done
    for _ in $(seq 1 30); do pg_isready -q -h localhost && break; sleep 1; done
    pg_isready -h localhost
fi

if ! redis-cli ping >/dev/null 2>&1; then
    echo "services: starting Redis"
    service redis-server start >/dev/null 2>&1 \
        || redis-server --daemonize yes --bind 127.0.0.1 --port 6379
    for _ in $(seq 1 30); do redis-cli ping >/dev/null 2>&1 && break; sleep 1; done
    redis-cli ping >/dev/null
fi

psql_admin() { su postgres -c "psql -v ON_ERROR_STOP=1 -Atq $*"; }

if [ "$(psql_admin "-c \"SELECT 1 FROM pg_roles WHERE rolname = '${DB_USER}'\"")" != "1" ]; then
    echo "services: creating role ${DB_USER}"
    psql_admin "-c \"CREATE ROLE ${DB_USER} LOGIN PASSWORD '${DB_PASS}'\""
fi
for db in $DATABASES; do
    if [ "$(psql_admin "-c \"SELECT 1 FROM pg_database WHERE datname = '${db}'\"")" != "1" ]; then
        echo "services: creating database ${db}"
        psql_admin "-c \"CREATE DATABASE ${db} OWNER ${DB_USER} ENCODING 'utf-8' TEMPLATE template0\""
    fi
done
