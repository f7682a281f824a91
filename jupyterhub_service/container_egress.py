"""What a session container may reach, applied by its spawner: the host
firewall rules of egress.py for the sessions network, before each start.
"""

from __future__ import annotations

import asyncio

from traitlets import Bool
from traitlets.config import Configurable

from . import egress
from .session_network import bridge_interface, network_gateway, own_address_towards


class ContainerEgressMixin(Configurable):
    """For a DockerSpawner with ``session_egress`` (the current session's
    mode) on a bridge sessions network."""

    enforce_egress = Bool(
        False, config=True,
        help="""Apply the host firewall rules of egress.py to the sessions
        network before each start (needs root on the Docker host, or the host's
        namespaces from a hub container: host_namespaces.py).""",
    )

    hub_in_container = Bool(
        False, config=True,
        help="""The hub runs in a container on the sessions network (compose):
        the egress rules let sessions reach the hub container's API port
        rather than the gateway's.""",
    )

    async def apply_egress(self) -> None:
        network = await self.docker("inspect_network", self.network_name)
        gateway = network_gateway(network)
        # the hub's address as the sessions see it: the gateway (the host),
        # or this container's own address on the sessions network
        hub_ip = own_address_towards(gateway) if self.hub_in_container else gateway
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: egress.apply(bridge_interface(network), hub_ip, self.hub.port,
                                       self.session_egress,
                                       hub_in_container=self.hub_in_container))
