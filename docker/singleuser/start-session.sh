#!/bin/sh
# Seed the fresh home with the session's notebooks, then run the server.
# /srv/seed is a read-only bind mount of the session's seed directory
# (start_here.ipynb and the opened notebook); ~/data is mounted by the spawner.
set -e
if [ -d /srv/seed ]; then
    cp -R /srv/seed/. "$HOME"/
fi
exec jupyterhub-singleuser "$@"
