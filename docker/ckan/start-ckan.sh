#!/bin/sh
# Write ckan.ini on first start (its generated secrets live in the config
# volume), apply the deployment's settings, migrate the database, serve.
# The plugin's own settings (CKAN_JUPYTERNOTEBOOK_URL, CKAN_API_JUPYTERHUB,
# CKAN_JUPYTERHUB_*) are read from the environment by the plugin itself.
set -eu
ini="${CKAN_INI:-/srv/app/ckan.ini}"
[ -f "$ini" ] || ln -sf /srv/app/config/ckan.ini "$ini"
if [ ! -s /srv/app/config/ckan.ini ]; then
    ckan generate config /srv/app/config/ckan.ini
    # The generated file sets these to empty values, which CKAN hands to
    # Flask as `Domain=` on the session cookie: browsers ignore that, but
    # Python's cookie jar (scripts, the tests) drops the cookie, so every
    # form POST fails its CSRF check. Unset, the cookie is host-only.
    sed -i -e '/^SESSION_COOKIE_DOMAIN *= *$/d' -e '/^SESSION_COOKIE_PATH *= *$/d' \
        /srv/app/config/ckan.ini
fi
ckan config-tool "$ini" \
    "ckan.site_url = ${CKAN_SITE_URL:?set CKAN_SITE_URL}" \
    "ckan.plugins = ${CKAN__PLUGINS:-activity jupyternotebook}" \
    "ckan.storage_path = ${CKAN_STORAGE_PATH:-/var/lib/ckan}" \
    "debug = false"
# sqlalchemy.url, solr_url and ckan.redis.url come from CKAN_SQLALCHEMY_URL,
# CKAN_SOLR_URL and CKAN_REDIS_URL, which CKAN reads itself.
ckan db init
ckan db pending-migrations --apply
exec gunicorn --bind 0.0.0.0:5000 --workers "${CKAN_WORKERS:-2}" --threads "${CKAN_THREADS:-8}" \
    --timeout 300 --access-logfile - wsgi:application
