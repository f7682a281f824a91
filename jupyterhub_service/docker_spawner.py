"""Spawners that run each session in its own container.

``SessionDockerSpawner`` (one host) and ``SessionSwarmSpawner`` (a swarm) take
everything session-specific from ``user_options``, which only the bridge sets::

    {"session_id", "dataset_id", "dataset_name", "expires_at",
     "limits": {"cpu_percent": 50, "memory_limit": "1G", "pids": 256},
     "data_dir": "/host/path", "home_seed_dir": "/host/path",
     "open_path": "start_here.ipynb"}

Each container gets the limits, ``~/data`` as a read-only bind mount of
``data_dir``, the seed directory read-only at ``/srv/seed`` (the image's start
command copies it into the fresh home), no capabilities, no new privileges,
and only the sessions network. The home lives in the container's writable
layer, so removing the container at stop is the revert.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from pathlib import Path

from dockerspawner import DockerSpawner, SwarmSpawner
from traitlets import Int, List, Unicode, default

from .spawners import wait_listening

log = logging.getLogger(__name__)

DEFAULT_IMAGE = "ckanext-jupyternotebook/singleuser:latest"
DEFAULT_NETWORK = "jupyter-sessions"
# labels on every session container, to find it again (the warm pool's claim)
LABEL_HUB_USER = "org.ckan.jupyternotebook.hub-user"
LABEL_SERVER = "org.ckan.jupyternotebook.server"
LABEL_SESSION = "org.ckan.jupyternotebook.session"


class SessionOptionsError(ValueError):
    """user_options that cannot describe a session."""


class SessionContainerMixin(DockerSpawner):
    """What both container spawners share: traitlets and user_options handling.

    A DockerSpawner subclass (not a plain mixin) so that traitlets sees its
    traits; SessionSwarmSpawner puts it before SwarmSpawner in its MRO."""

    sessions_network = Unicode(
        DEFAULT_NETWORK,
        config=True,
        help="""Docker network the session containers join, and nothing else.

        Only the hub also joins it. It must never be the portal's backend
        network (CKAN_NETWORK): sessions must not reach CKAN's database,
        Solr or Redis.""",
    )

    data_mount = Unicode(
        "/home/jovyan/data",
        config=True,
        help="Where the session's data directory is mounted, read-only, in the container.",
    )

    seed_mount = Unicode(
        "/srv/seed",
        config=True,
        help="""Where the session's home seed directory is mounted, read-only.

        The image's start command copies it into the fresh home before the
        server starts.""",
    )

    host_storage_root = Unicode(
        "",
        config=True,
        help="""If set, data_dir and home_seed_dir must lie inside this host directory.

        A guard against mounting arbitrary host paths should user_options
        ever come from somewhere other than the bridge.""",
    )

    default_cpu_percent = Int(
        50,
        min=1,
        config=True,
        help="CPU limit in percent of one core when user_options carry none.",
    )

    default_memory_limit = Unicode(
        "1G",
        config=True,
        help="Memory limit when user_options carry none (e.g. 512M, 1G).",
    )

    default_pids_limit = Int(
        256,
        min=16,
        config=True,
        help="Maximum number of processes (and threads) per session container.",
    )

    session_user = Unicode(
        "1000:100",
        config=True,
        help="uid:gid the session runs as; never root, whatever the image says.",
    )

    cap_drop = List(
        ["ALL"],
        config=True,
        help="Linux capabilities dropped from session containers.",
    )

    @default("image")
    def _default_image(self):
        return DEFAULT_IMAGE

    @default("network_name")
    def _default_network_name(self):
        return self.sessions_network

    @default("use_internal_ip")
    def _default_use_internal_ip(self):
        return True

    # -- user_options ---------------------------------------------------

    def _host_dir(self, key: str) -> str | None:
        value = self.user_options.get(key)
        if not value:
            return None
        path = Path(str(value))
        if not path.is_absolute():
            raise SessionOptionsError(f"{key} must be an absolute path: {value!r}")
        path = Path(os.path.normpath(path))
        if self.host_storage_root:
            root = Path(os.path.normpath(self.host_storage_root))
            if root != path and root not in path.parents:
                raise SessionOptionsError(f"{key} is outside {root}: {value!r}")
        return str(path)

    def session_limits(self) -> tuple[float, str, int]:
        """(cpus, memory limit, pids) for this session."""
        limits = self.user_options.get("limits") or {}
        try:
            cpus = int(limits.get("cpu_percent") or self.default_cpu_percent) / 100
            memory = str(limits.get("memory_limit") or self.default_memory_limit)
            pids = int(limits.get("pids") or self.default_pids_limit)
        except (TypeError, ValueError) as e:
            raise SessionOptionsError(f"bad limits {limits!r}: {e}") from None
        if cpus <= 0 or pids < 16:
            raise SessionOptionsError(f"bad limits {limits!r}")
        return cpus, memory, pids

    def session_volumes(self) -> dict:
        """Read-only binds: the dataset at ~/data, the home seed at /srv/seed."""
        volumes = {}
        data_dir = self._host_dir("data_dir")
        if data_dir:
            volumes[data_dir] = {"bind": self.data_mount, "mode": "ro"}
        seed_dir = self._host_dir("home_seed_dir")
        if seed_dir:
            volumes[seed_dir] = {"bind": self.seed_mount, "mode": "ro"}
        return volumes

    async def _wait_listening(self, ip: str, port: int) -> None:
        """Until the session's server listens, or its container or task is
        gone (checked once a second: a container that exited at once must not
        be waited on until the timeout)."""

        async def gone():
            return await self.poll() is not None

        await wait_listening(ip, port, self.http_timeout, gone, gone_every=1.0)

    def session_labels(self) -> dict:
        return {
            LABEL_HUB_USER: self.user.name,
            LABEL_SERVER: self.name or "",
            LABEL_SESSION: str(self.user_options.get("session_id", "")),
        }

    def apply_session_options(self):
        """Limits, mounts and environment of this session, from user_options.

        The mounts replace any configured ``volumes``: a session container
        gets exactly these two read-only binds and no named volume, so
        removing the container at stop leaves nothing of the session behind.
        """
        cpus, memory, pids = self.session_limits()
        self.mem_limit = memory
        self.cpu_limit = cpus
        self._pids_limit = pids
        self.volumes = self.session_volumes()
        self.read_only_volumes = {}
        open_path = self.user_options.get("open_path")
        if open_path:
            self.default_url = "/lab/tree/" + str(open_path).lstrip("/")
        self.environment = {
            **self.environment,
            "CKAN_SESSION_ID": str(self.user_options.get("session_id", "")),
            "CKAN_DATASET_ID": str(self.user_options.get("dataset_id", "")),
            "CKAN_DATASET_NAME": str(self.user_options.get("dataset_name", "")),
            "CKAN_SESSION_EXPIRES_AT": str(self.user_options.get("expires_at", "")),
            # what jupyter-resource-usage and friends read
            "CPU_LIMIT": str(cpus),
        }


class SessionDockerSpawner(SessionContainerMixin):
    """One container per session on the local Docker engine."""

    @default("remove")
    def _default_remove(self):
        # The revert: the container, its writable home and its anonymous
        # volumes go when the server stops.
        return True

    async def start(self):
        self.apply_session_options()
        ip, port = await super().start()
        await self._wait_listening(ip, port)
        return ip, port

    async def create_object(self):
        cpus = self.cpu_limit
        # NanoCpus rather than dockerspawner's CpuQuota/CpuPeriod: one number,
        # the same one swarm uses, shown as-is by `docker inspect`.
        self.cpu_limit = None
        try:
            self.extra_host_config = {
                **self._configured(self.extra_host_config),
                "nano_cpus": int(cpus * 1e9),
                "pids_limit": self._pids_limit,
                "cap_drop": list(self.cap_drop),
                "security_opt": ["no-new-privileges:true"],
                "privileged": False,
            }
            configured = self._configured(self.extra_create_kwargs)
            self.extra_create_kwargs = {
                **configured,
                "user": self.session_user,
                "labels": {**(configured.get("labels") or {}), **self.session_labels()},
            }
            return await super().create_object()
        finally:
            self.cpu_limit = cpus

    def _configured(self, value):
        value = self._eval_if_callable(value)
        return dict(value or {})


class SessionSwarmSpawner(SessionContainerMixin, SwarmSpawner):
    """One swarm service per session.

    The hub runs in a container on the same (attachable overlay) sessions
    network and reaches each service by its name. Swarm services take neither
    ``security_opt`` nor a pids limit through docker-py's types; the pids
    limit is added to the service's resource limits (API 1.41+).
    ``no-new-privileges`` cannot be set on services on Docker 20.10;
    capabilities are still dropped.
    """

    @default("extra_endpoint_spec")
    def _default_extra_endpoint_spec(self):
        # DNS round robin: the service name resolves to its one task's
        # address. It does not need the IPVS virtual IPs of the routing mesh,
        # which some kernels (this CI's among them) lack.
        return {"mode": "dnsrr"} if self.use_internal_ip else {}

    async def start(self):
        self.apply_session_options()
        self.extra_container_spec = {
            **self.extra_container_spec,
            "user": self.session_user,
            "cap_drop": list(self.cap_drop),
            "labels": {
                **(self.extra_container_spec.get("labels") or {}),
                **self.session_labels(),
            },
        }
        ip, port = await super().start()
        await self._wait_listening(ip, port)
        return ip, port

    def _docker(self, method, *args, **kwargs):
        if method == "create_service":
            resources = kwargs["task_template"].setdefault("Resources", {})
            resources.setdefault("Limits", {})["Pids"] = self._pids_limit
        return super()._docker(method, *args, **kwargs)


# -- the warm pool ------------------------------------------------------------


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


# -- hub configuration --------------------------------------------------------


def ensure_sessions_network(client, name: str, swarm: bool = False) -> dict:
    """Create the sessions network if missing; return its inspect data."""
    found = [n for n in client.networks(names=[name]) if n["Name"] == name]
    if not found:
        log.info("creating docker network %s", name)
        if swarm:
            client.create_network(name, driver="overlay", attachable=True)
        else:
            client.create_network(name, driver="bridge")
    return client.inspect_network(name)


def network_subnets(name: str) -> list:
    """The subnets of a Docker network ([] when it does not exist yet or the
    engine does not answer)."""
    import docker

    try:
        client = docker.APIClient(version="auto")
        try:
            network = client.inspect_network(name)
        finally:
            client.close()
    except docker.errors.NotFound:
        return []
    except docker.errors.DockerException as e:
        log.warning("cannot inspect the sessions network %s: %s", name, e)
        return []
    configs = (network.get("IPAM") or {}).get("Config") or []
    return [ipaddress.ip_network(c["Subnet"], strict=False) for c in configs if c.get("Subnet")]


def network_gateway(network: dict) -> str | None:
    for cfg in (network.get("IPAM") or {}).get("Config") or []:
        gateway = cfg.get("Gateway")
        if gateway:
            return str(ipaddress.ip_address(gateway))
    return None


def docker_spawner_config(
    c, settings, *, hub_in_container: bool | None = None, hub_host: str = ""
):
    """Apply the docker/swarm spawner settings to a JupyterHub config ``c``.

    With the hub on the host (dev, tests), the hub's API binds to the
    sessions network's gateway address, which is the host seen from a
    session; with the hub in a container on that network (compose, swarm),
    sessions reach it by its container name.
    """
    import docker

    swarm = settings.spawner == "swarm"
    network = getattr(settings, "sessions_network", "") or DEFAULT_NETWORK
    backend = getattr(settings, "network", "")
    if backend and backend == network:
        raise ValueError(
            f"the sessions network must not be the portal backend network ({backend})"
        )
    image = getattr(settings, "singleuser_image", "") or DEFAULT_IMAGE
    cls = SessionSwarmSpawner if swarm else SessionDockerSpawner
    c.JupyterHub.spawner_class = cls
    spawner_cfg = c[cls.__name__]
    spawner_cfg.image = image
    spawner_cfg.sessions_network = network
    spawner_cfg.network_name = network
    spawner_cfg.default_cpu_percent = int(settings.cpu_percent)
    spawner_cfg.default_memory_limit = str(settings.memory_limit)
    storage_root = getattr(settings, "storage_root", None)
    if storage_root:
        spawner_cfg.host_storage_root = str(Path(storage_root).resolve())

    # Said, not guessed: /.dockerenv also exists on hosts that are
    # themselves containers (CI machines, dev containers).
    if hub_in_container is None:
        hub_in_container = bool(getattr(settings, "hub_connect_host", ""))
    hub_host = hub_host or getattr(settings, "hub_connect_host", "")
    client = docker.APIClient(version="auto")
    try:
        net = ensure_sessions_network(client, network, swarm=swarm)
        if hub_in_container:
            # sessions resolve the hub by its host name on the sessions
            # network: give the hub container `hostname:` = its service name
            c.JupyterHub.hub_ip = "0.0.0.0"
            c.JupyterHub.hub_connect_ip = hub_host or os.uname().nodename
        elif swarm:
            # overlay networks are not routable from the host: the hub reaches
            # services through their published port, sessions reach the hub
            # through docker_gwbridge's gateway, the host seen from a task.
            gateway = network_gateway(client.inspect_network("docker_gwbridge"))
            c.JupyterHub.hub_ip = gateway
            c.JupyterHub.hub_connect_ip = gateway
            spawner_cfg.use_internal_ip = False  # needs the routing mesh
        else:
            gateway = network_gateway(net)
            c.JupyterHub.hub_ip = gateway
            c.JupyterHub.hub_connect_ip = gateway
    finally:
        client.close()
    return c
