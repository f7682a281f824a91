"""The warm pool's claim for the container spawners: copy the notebooks the
bridge has just written into the running session's home."""

from __future__ import annotations

import asyncio

from .container_labels import LABEL_HUB_USER, LABEL_SERVER


def copy_seed_into_session(hub_user: str, server_name: str, seed_mount: str = "/srv/seed"):
    """Copy the seed directory into the running session's home.

    A pool server started with an empty seed; at claim the bridge has written
    the notebooks into the seed directory on the host, which the container
    sees at ``seed_mount`` (and the dataset's files in its ~/data mount). Runs
    as the session user. Swarm: the task must run on this engine's node.
    """
    import docker

    client = docker.APIClient(version="auto")
    try:
        found = client.containers(filters={
            "label": [f"{LABEL_HUB_USER}={hub_user}", f"{LABEL_SERVER}={server_name}"],
            "status": "running",
        })
        if not found:
            raise RuntimeError(f"no running container for {hub_user}/{server_name} on this engine")
        exec_id = client.exec_create(found[0]["Id"], ["sh", "-c", f'cp -R {seed_mount}/. "$HOME"/'])
        out = client.exec_start(exec_id)
        code = client.exec_inspect(exec_id)["ExitCode"]
        if code:
            raise RuntimeError(f"seeding {hub_user}/{server_name} failed ({code}): {out[-500:]!r}")
    finally:
        client.close()


def claim_hook(settings, seed_mount: str = "/srv/seed"):
    """The bridge's ``on_claim`` for container spawners: ``await hook(rec, paths)``."""

    async def on_claim(rec, paths) -> None:
        await asyncio.get_running_loop().run_in_executor(
            None, copy_seed_into_session, rec.hub_user, rec.server_name, seed_mount
        )

    return on_claim
