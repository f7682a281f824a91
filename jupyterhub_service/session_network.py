"""The Docker network the session containers join: creating it, and reading
its subnet, gateway and bridge interface.

Blocking docker-py calls; the callers run them at configuration time or in
an executor.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

log = logging.getLogger(__name__)

DEFAULT_NETWORK = "jupyter-sessions"

# No traffic between two containers of a bridge network (Docker adds a DROP
# for bridge -> same bridge). The hub on the host still reaches every
# session through the gateway.
ICC_OPTION = "com.docker.network.bridge.enable_icc"
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"


def ensure_sessions_network(client, name: str, swarm: bool = False) -> dict:
    """Create the sessions network if missing; return its inspect data.

    A bridge network is created without inter-container communication. One
    that already exists is used as it is: a warning says when it still lets
    sessions talk to each other (remove it while no session runs and the
    hub recreates it)."""
    found = [n for n in client.networks(names=[name]) if n["Name"] == name]
    if not found:
        log.info("creating docker network %s", name)
        if swarm:
            client.create_network(name, driver="overlay", attachable=True)
        else:
            client.create_network(name, driver="bridge", options={ICC_OPTION: "false"})
    network = client.inspect_network(name)
    if network.get("Driver") == "bridge" and not icc_disabled(network):
        log.warning(
            "the sessions network %s lets sessions reach each other (%s is not false); "
            "remove it while no session runs so that the hub recreates it", name, ICC_OPTION)
    return network


def remove_sessions_network(client, name: str) -> None:
    """Remove the sessions network ``name`` (a low-level ``docker.APIClient``)
    with the containers still on it and the host firewall rules the hub put
    on it (egress.py). For the tests and benchmarks that make networks of
    their own; gone already is fine."""
    import docker

    from . import egress

    for network in [n for n in client.networks(names=[name]) if n["Name"] == name]:
        for container in client.containers(all=True, filters={"network": network["Id"]}):
            try:
                client.remove_container(container["Id"], force=True, v=True)
            except docker.errors.NotFound:
                pass
        if network.get("Driver") == "bridge":
            egress.remove(bridge_interface(client.inspect_network(network["Id"])))
        try:
            client.remove_network(network["Id"])
        except docker.errors.NotFound:
            pass


def icc_disabled(network: dict) -> bool:
    return (network.get("Options") or {}).get(ICC_OPTION) == "false"


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
    return subnets(network)


def subnets(network: dict) -> list:
    configs = (network.get("IPAM") or {}).get("Config") or []
    return [ipaddress.ip_network(c["Subnet"], strict=False) for c in configs if c.get("Subnet")]


def task_address(task: dict, network_name: str) -> str | None:
    """A swarm task's IPv4 address on the named network, or None before the
    task has one."""
    for attachment in task.get("NetworksAttachments") or []:
        spec = (attachment.get("Network") or {}).get("Spec") or {}
        if spec.get("Name") != network_name:
            continue
        for cidr in attachment.get("Addresses") or []:
            return cidr.split("/", 1)[0]
    return None


def network_gateway(network: dict) -> str | None:
    for cfg in (network.get("IPAM") or {}).get("Config") or []:
        gateway = cfg.get("Gateway")
        if gateway:
            return str(ipaddress.ip_address(gateway))
    return None


def bridge_interface(network: dict) -> str:
    """The host's interface of a bridge network (Docker names it
    ``br-<first 12 hex digits of the id>`` unless told otherwise)."""
    return (network.get("Options") or {}).get(BRIDGE_NAME_OPTION) or "br-" + network["Id"][:12]


def own_address_towards(address: str) -> str:
    """This host's (or container's) source address for packets to
    ``address``: on a directly attached network, its address there. No
    packet is sent (a UDP socket only picks its route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((address, 9))
        return s.getsockname()[0]
