"""Session containers, services, homes and volumes that no session record
owns: what a crash, a killed hub or a failed teardown left behind.

The reaper calls ``remove_orphans`` with the ids of every session it knows
(live, being started or stopped, and the pool's slots). Blocking docker-py
calls; the bridge runs it in an executor.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .container_labels import LABEL_SESSION
from .session_disk import HOMES_DIR, SessionHome, session_keys

log = logging.getLogger(__name__)


def remove_orphans(known_session_ids: set[str], homes_root: str | Path | None = None,
                   network: str | None = None, client=None) -> list[str]:
    """Remove what carries a session id not in ``known_session_ids``;
    return what was removed (``container <name>``, ``service <name>``,
    ``volume <name>``, home mounts and files).

    Containers and services are found by their session label on this
    deployment's sessions network, so nothing that is not a session, and no
    session of another hub on the same engine, is touched. ``homes_root`` and
    ``network`` default to the settings' (storage root, sessions network);
    ``client`` to a docker-py client of the engine.
    """
    import docker

    if homes_root is None or network is None:
        from .settings import load

        settings = load()
        homes_root = homes_root or settings.storage_root.resolve() / HOMES_DIR
        network = network or settings.sessions_network
    known = {str(k) for k in known_session_ids}
    own_client = client is None
    client = client or docker.from_env(timeout=120)
    removed: list[str] = []
    try:
        removed += _remove_services(client, known, network)
        removed += _remove_containers(client, known, network)
        removed += _remove_volumes(client, known)
    finally:
        if own_client:
            client.close()
    for key in sorted(session_keys(homes_root) - known):
        removed += SessionHome(homes_root, key).remove()
    for what in removed:
        log.info("removed orphan %s", what)
    return removed


def _unknown(labels: dict | None, known: set[str]) -> bool:
    labels = labels or {}
    return LABEL_SESSION in labels and labels[LABEL_SESSION] not in known


def _remove_services(client, known: set[str], network: str) -> list[str]:
    import docker

    if client.info().get("Swarm", {}).get("ControlAvailable") is not True:
        return []
    try:
        network_id = client.networks.get(network).id
    except docker.errors.NotFound:
        return []
    removed = []
    for service in client.services.list():
        spec = service.attrs.get("Spec", {})
        template = spec.get("TaskTemplate") or {}
        labels = {**(spec.get("Labels") or {}),
                  **(template.get("ContainerSpec", {}).get("Labels") or {})}
        networks = {n.get("Target") for n in template.get("Networks") or spec.get("Networks") or []}
        if _unknown(labels, known) and networks & {network, network_id}:
            try:
                service.remove()
                removed.append(f"service {service.name}")
            except docker.errors.NotFound:
                pass
    return removed


def _remove_containers(client, known: set[str], network: str) -> list[str]:
    import docker

    removed = []
    found = client.containers.list(all=True, ignore_removed=True,
                                   filters={"label": LABEL_SESSION, "network": network})
    for container in found:
        if not _unknown(container.labels, known):
            continue
        if container.labels.get("com.docker.swarm.service.id"):
            continue  # a task: it goes with its service
        try:
            container.remove(force=True, v=True)
            removed.append(f"container {container.name}")
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            if e.status_code != 409:  # already being removed
                raise
    return removed


def _remove_volumes(client, known: set[str]) -> list[str]:
    import docker

    removed = []
    for volume in client.volumes.list(filters={"label": LABEL_SESSION}):
        if _unknown(volume.attrs.get("Labels"), known):
            try:
                volume.remove(force=True)
                removed.append(f"volume {volume.name}")
            except docker.errors.NotFound:
                pass
    return removed
