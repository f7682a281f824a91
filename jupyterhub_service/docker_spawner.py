"""Spawners that run each session in its own container.

``SessionDockerSpawner`` (one host) and ``SessionSwarmSpawner`` (a swarm) take
everything session-specific from ``user_options``, which only the bridge sets::

    {"session_id", "dataset_id", "dataset_name", "expires_at",
     "limits": {"cpu_percent": 50, "memory_limit": "1G", "pids": 256,
                "disk_limit": "2G", "session_egress": "public"},
     "data_dir": "/host/path", "home_seed_dir": "/host/path",
     "workspace_dir": "/host/path" (a logged-in user's workspace, optional),
     "open_path": "start_here.ipynb"}

JupyterHub hands them to ``apply_user_options`` before ``start()``; that is
where they become the spawner's limits, mounts, labels and environment.

Each container gets the limits, ``~/data`` as a read-only bind mount of
``data_dir``, the seed directory read-only at ``/srv/seed`` (the image's start
command copies it into the fresh home), no capabilities, no new privileges,
and only the sessions network. With the hub on the host (``home_on_image``),
the root filesystem is read-only, /tmp a small tmpfs and the home an image
file of ``disk_limit`` (session_disk.py), and the host's firewall lets the
session reach only the hub's API and, with ``session_egress=public``, the
public internet (egress.py). Removing the container and the home at stop is
the revert.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from dockerspawner import DockerSpawner, SwarmSpawner
from jupyterhub.utils import exponential_backoff
from traitlets import Enum, Int, List, Unicode, default

from . import egress, host_namespaces
from .container_egress import ContainerEgressMixin
from .container_home import ContainerHomeMixin
from .container_labels import LABEL_HUB_USER, LABEL_SERVER, LABEL_SESSION
from .session_network import (
    DEFAULT_NETWORK,
    ensure_sessions_network,
    network_gateway,
    task_address,
)
from .session_options import (
    MIN_DISK,
    SessionOptionsError,
    host_dir,
    session_disk_limit,
    session_egress_mode,
    session_environment,
    session_limits,
)
from .spawners import wait_answering

__all__ = [
    "LABEL_HUB_USER", "LABEL_SERVER", "LABEL_SESSION", "DEFAULT_IMAGE", "MIN_DISK",
    "SessionOptionsError", "SessionContainerSpawner", "SessionDockerSpawner",
    "SessionSwarmSpawner", "apply_session_options", "docker_spawner_config",
]

log = logging.getLogger(__name__)

DEFAULT_IMAGE = "ckanext-jupyternotebook/singleuser:latest"
#: how long a new swarm task may take to get its address on the sessions network
TASK_ADDRESS_TIMEOUT = 30


def apply_session_options(spawner, user_options):
    """The ``apply_user_options`` hook of the session spawners."""
    return spawner.map_user_options(user_options or {})


class SessionContainerSpawner(ContainerHomeMixin, ContainerEgressMixin, DockerSpawner):
    """What both container spawners share: settings and the mapping of
    user_options onto DockerSpawner's traits. The home image
    (container_home.py) and the egress rules (container_egress.py) are
    enforced by the docker spawner only."""

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

    home_mount = Unicode("/home/jovyan", config=True, help="The session user's home in the image.")

    host_storage_root = Unicode(
        "",
        config=True,
        help="""If set, data_dir and home_seed_dir must lie inside this host directory.

        A guard against mounting arbitrary host paths should user_options
        ever come from somewhere other than the bridge.""",
    )

    default_cpu_percent = Int(
        50, min=1, config=True,
        help="CPU limit in percent of one core when user_options carry none.",
    )

    default_memory_limit = Unicode(
        "1G", config=True, help="Memory limit when user_options carry none (e.g. 512M, 1G).",
    )

    default_disk_limit = Unicode(
        "2G", config=True,
        help="Size of the session's home when user_options carry none (with home_on_image).",
    )

    default_session_egress = Enum(
        list(egress.MODES), "public", config=True,
        help="""What a session reaches besides the hub when user_options say
        nothing: ``public`` (the internet, no private address) or ``none``.""",
    )

    default_pids_limit = Int(
        256, min=16, config=True,
        help="Maximum number of processes (and threads) per session container.",
    )

    session_user = Unicode(
        "1000:100", config=True,
        help="uid:gid the session runs as; never root, whatever the image says.",
    )

    cap_drop = List(["ALL"], config=True, help="Linux capabilities dropped from session containers.")

    # what map_user_options found for the current session (and home_key,
    # disk_limit: container_home.py)
    session_id = ""
    session_egress = "public"

    @default("image")
    def _default_image(self):
        return DEFAULT_IMAGE

    @default("network_name")
    def _default_network_name(self):
        return self.sessions_network

    @default("use_internal_ip")
    def _default_use_internal_ip(self):
        return True

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return apply_session_options

    # -- user_options ---------------------------------------------------

    async def map_user_options(self, options: dict) -> None:
        """Limits, mounts, labels and environment of this session.

        The mounts replace any configured ``volumes``: a session container
        gets exactly these binds and no named volume, so removing it (and its
        home) at stop leaves nothing of the session behind."""
        cpus, memory, pids = session_limits(
            options, self.default_cpu_percent, self.default_memory_limit, self.default_pids_limit)
        cpus = min(cpus, await self.engine_cpus())
        self.disk_limit = session_disk_limit(options, self.default_disk_limit)
        self.session_egress = session_egress_mode(options, self.default_session_egress)
        self.session_id = str(options.get("session_id", ""))
        self.home_key = self._home_key() if self.home_on_image else ""
        self.mem_limit = memory
        self.volumes = self.session_volumes(options)
        self.read_only_volumes = {}
        open_path = options.get("open_path")
        if open_path:
            self.default_url = "/lab/tree/" + str(open_path).lstrip("/")
        self.environment = {
            **self._configured("environment"),
            **session_environment(options, self.session_id, cpus),
            **self.home_environment(),
        }
        self.apply_engine_options(cpus, pids)

    def apply_engine_options(self, cpus: float, pids: int) -> None:
        raise NotImplementedError

    def session_volumes(self, options: dict) -> dict:
        """The home (its own filesystem, read-write), the dataset at ~/data
        and the home seed at /srv/seed (both read-only)."""
        volumes = {}
        if self.home_on_image:
            volumes[self.home().mountpoint.as_posix()] = {"bind": self.home_mount, "mode": "rw"}
        data_dir = host_dir(options, "data_dir", self.host_storage_root)
        if data_dir:
            volumes[data_dir] = {"bind": self.data_mount, "mode": "ro"}
        seed_dir = host_dir(options, "home_seed_dir", self.host_storage_root)
        if seed_dir:
            volumes[seed_dir] = {"bind": self.seed_mount, "mode": "ro"}
        workspace_dir = host_dir(options, "workspace_dir", self.host_storage_root)
        if workspace_dir:
            # the user's workspace (workspaces.py): only this user's sessions get it
            volumes[workspace_dir] = {"bind": f"{self.home_mount}/work", "mode": "rw"}
        return volumes

    def session_labels(self) -> dict:
        return {
            LABEL_HUB_USER: self.user.name,
            LABEL_SERVER: self.name or "",
            LABEL_SESSION: self.session_id,
        }

    def _configured(self, name: str) -> dict:
        """The configured value of a dict trait, as it was before the first
        session changed it (the spawner object serves every start of its
        server)."""
        base = self.__dict__.setdefault("_configured_values", {})
        if name not in base:
            base[name] = dict(self._eval_if_callable(getattr(self, name)) or {})
        return dict(base[name])

    _engine_cpus: float | None = None

    async def engine_cpus(self) -> float:
        """The engine's CPUs: Docker refuses a CPU limit above them."""
        cls = type(self)
        if cls._engine_cpus is None:
            info = await self.docker("info")
            cls._engine_cpus = float(info.get("NCPU") or os.cpu_count() or 1)
        return cls._engine_cpus

    # -- start ------------------------------------------------------------

    async def _wait_listening(self, ip: str, port: int) -> None:
        """Until the session's own server answers under its base URL;
        ServerGone when its container or task is gone first (checked once a
        second: a container that exited at once must not be waited on until
        the timeout)."""

        async def gone():
            return await self.poll() is not None

        await wait_answering(ip, port, self.server.base_url, self.http_timeout, gone,
                             gone_every=1.0)


class SessionDockerSpawner(SessionContainerSpawner):
    """One container per session on the local Docker engine."""

    @default("remove")
    def _default_remove(self):
        # The revert: the container, its writable layer and its anonymous
        # volumes go when the server stops.
        return True

    def apply_engine_options(self, cpus: float, pids: int) -> None:
        # NanoCpus rather than dockerspawner's CpuQuota/CpuPeriod: one number,
        # the same one swarm uses, shown as-is by `docker inspect`.
        self.cpu_limit = None
        host = {
            **self._configured("extra_host_config"),
            "nano_cpus": int(cpus * 1e9),
            "pids_limit": pids,
            "cap_drop": list(self.cap_drop),
            "security_opt": ["no-new-privileges:true"],
            "privileged": False,
            **self.read_only_root(),
        }
        self.extra_host_config = host
        configured = self._configured("extra_create_kwargs")
        self.extra_create_kwargs = {
            **configured,
            "user": self.session_user,
            "labels": {**(configured.get("labels") or {}), **self.session_labels()},
        }

    async def start(self):
        if self.enforce_egress:
            await self.apply_egress()
        try:
            if self.home_on_image:
                await self.create_home()
            ip, port = await super().start()
            await self._wait_listening(ip, port)
        except BaseException:
            # JupyterHub may not call stop() after a failed start: leave nothing
            await self.remove_container_and_home()
            raise
        return ip, port

    async def stop(self, now=False):
        await super().stop(now=now)
        await self.remove_container_and_home()

    async def remove_container_and_home(self) -> None:
        import docker

        try:
            await self.docker("remove_container", self.object_name, v=True, force=True)
        except docker.errors.APIError as e:
            if e.status_code not in (404, 409):
                raise
        if self.home_on_image:
            await self._wait_container_gone()
            await self.remove_home()


class SessionSwarmSpawner(SessionContainerSpawner, SwarmSpawner):
    """One swarm service per session.

    The hub runs in a container on the same (attachable overlay) sessions
    network and reaches each service by its name. Swarm services take neither
    ``security_opt`` nor a pids limit through docker-py's types; the pids
    limit is added to the service's resource limits (API 1.41+).
    ``no-new-privileges`` cannot be set on services on Docker 20.10;
    capabilities are still dropped. Neither the home's size nor the egress
    rules are enforced (the tasks may run on other nodes).
    """

    @default("extra_endpoint_spec")
    def _default_extra_endpoint_spec(self):
        # DNS round robin: the service name resolves to its one task's
        # address. It does not need the IPVS virtual IPs of the routing mesh,
        # which some kernels (this CI's among them) lack.
        return {"mode": "dnsrr"} if self.use_internal_ip else {}

    async def get_ip_and_port(self):
        """The running task's own address on the sessions network, not the
        service's name: JupyterHub 6 reaches servers through aiohttp with
        aiodns, whose c-ares cache keeps a name's answer for its DNS TTL
        (Docker's is 600 s), so a session relaunched under the same service
        name was looked for at its predecessor's address until the spawn
        timed out. The address lasts as long as the task (services are never
        restarted in place), as a container's does for the docker spawner."""
        if not self.use_internal_ip:
            return await super().get_ip_and_port()
        async def address():
            task = await self.get_task()
            return task_address(task, self.network_name) if task else None

        try:
            found = await exponential_backoff(
                address, f"service {self.service_name} has no address", start_wait=0.1,
                scale_factor=1.5, max_wait=1, timeout=TASK_ADDRESS_TIMEOUT, timeout_tolerance=0)
        except asyncio.TimeoutError:
            raise RuntimeError(
                f"service {self.service_name} has no address on {self.network_name}") from None
        return found, self.port

    def apply_engine_options(self, cpus: float, pids: int) -> None:
        self.cpu_limit = cpus
        self._pids_limit = pids
        configured = self._configured("extra_container_spec")
        self.extra_container_spec = {
            **configured,
            "user": self.session_user,
            "cap_drop": list(self.cap_drop),
            "labels": {**(configured.get("labels") or {}), **self.session_labels()},
        }

    async def start(self):
        ip, port = await super().start()
        await self._wait_listening(ip, port)
        return ip, port

    def _docker(self, method, *args, **kwargs):
        if method == "create_service":
            resources = kwargs["task_template"].setdefault("Resources", {})
            resources.setdefault("Limits", {})["Pids"] = self._pids_limit
        return super()._docker(method, *args, **kwargs)


# -- hub configuration --------------------------------------------------------


def docker_spawner_config(
    c, settings, *, hub_in_container: bool | None = None, hub_host: str = ""
):
    """Apply the docker/swarm spawner settings to a JupyterHub config ``c``.

    With the hub on the host (dev, tests), the hub's API binds to the
    sessions network's gateway address, which is the host seen from a
    session, and the spawner enforces the disk limit and the egress rules;
    with the hub in a container on that network (compose, swarm), sessions
    reach it by its container name.
    """
    swarm = settings.spawner == "swarm"
    network = _sessions_network_name(settings)
    cls = SessionSwarmSpawner if swarm else SessionDockerSpawner
    c.JupyterHub.spawner_class = cls
    spawner_cfg = c[cls.__name__]
    _session_defaults(spawner_cfg, settings, network)

    # Said, not guessed: /.dockerenv also exists on hosts that are
    # themselves containers (CI machines, dev containers).
    if hub_in_container is None:
        hub_in_container = bool(getattr(settings, "hub_connect_host", ""))
    hub_host = hub_host or getattr(settings, "hub_connect_host", "")
    on_host = _confined_on_host(swarm, hub_in_container)
    spawner_cfg.home_on_image = on_host
    spawner_cfg.enforce_egress = on_host
    spawner_cfg.hub_in_container = bool(hub_in_container)
    if on_host:
        egress.prune()
    _connect_hub_and_sessions(c, spawner_cfg, network, swarm=swarm,
                              hub_in_container=hub_in_container, hub_host=hub_host)
    return c


def _sessions_network_name(settings) -> str:
    network = getattr(settings, "sessions_network", "") or DEFAULT_NETWORK
    backend = getattr(settings, "network", "")
    if backend and backend == network:
        raise ValueError(
            f"the sessions network must not be the portal backend network ({backend})"
        )
    return network


def _session_defaults(spawner_cfg, settings, network: str) -> None:
    """The image, network and limits a session gets when its user_options
    say nothing else."""
    # class-specific, so that it wins over any c.Spawner.apply_user_options
    spawner_cfg.apply_user_options = apply_session_options
    spawner_cfg.image = getattr(settings, "singleuser_image", "") or DEFAULT_IMAGE
    spawner_cfg.sessions_network = network
    spawner_cfg.network_name = network
    spawner_cfg.default_cpu_percent = int(settings.cpu_percent)
    spawner_cfg.default_memory_limit = str(settings.memory_limit)
    spawner_cfg.default_disk_limit = str(getattr(settings, "disk_limit", "") or "2G")
    spawner_cfg.default_session_egress = getattr(settings, "session_egress", "") or "public"
    storage_root = getattr(settings, "storage_root", None)
    if storage_root:
        spawner_cfg.host_storage_root = str(Path(storage_root).resolve())


def _confined_on_host(swarm: bool, hub_in_container: bool) -> bool:
    """Whether the hub acts as root in the Docker host's namespaces: loop
    mounts where the engine sees them and the host's firewall (a hub
    container enters them: compose). Says so when sessions go unconfined."""
    on_host = not swarm and (not hub_in_container or host_namespaces.entered())
    if on_host and os.geteuid() != 0:
        log.warning("the hub does not run as root: neither disk_limit nor session_egress "
                    "is enforced for the session containers")
        on_host = False
    if on_host and host_namespaces.usable() is not None:
        log.warning("%s: neither disk_limit nor session_egress is enforced for the "
                    "session containers", host_namespaces.usable())
        on_host = False
    if not on_host and not swarm:
        log.warning("session containers are NOT confined to the hub and the public internet "
                    "(session_egress) and have no disk_limit: see docker/README.md")
    return on_host


def _connect_hub_and_sessions(c, spawner_cfg, network: str, *, swarm: bool,
                              hub_in_container: bool, hub_host: str) -> None:
    """Create the sessions network if missing, and set where the hub listens
    and the address sessions reach it at."""
    import docker

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
