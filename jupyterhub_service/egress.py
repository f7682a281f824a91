"""What a session container may reach: host firewall rules for the sessions
network (a Docker bridge network; the hub on the host, or in a container on
that network with the host's namespaces at hand, see host_namespaces.py).

Two chains per network, both keyed by the network's bridge interface:

- ``JN-IN-<bridge>`` (jumped to from ``INPUT``): what a session may send to
  the host itself, through any of its addresses: only the hub's API port on
  the gateway, and replies to connections the hub opened (the hub reaches
  each session's server). An ``internal`` network would not stop this.
- ``JN-OUT-<bridge>`` (jumped to from ``DOCKER-USER``, which Docker leaves to
  us and evaluates before its own rules): what a session may send through the
  host. ``public``: everything but private, loopback, link-local (the cloud
  metadata service), CGNAT and reserved ranges, so ``pip install`` works.
  ``none``: nothing. DNS to the host's resolvers stays open in ``public``:
  Docker's embedded resolver forwards from inside the container.

Sessions cannot reach each other either: the network is created with
``enable_icc=false`` (session_network.py), and their subnet is private.

With the hub in a container on the sessions network (``hub_in_container``,
the compose stack), the hub is not on the host: ``JN-IN`` keeps only replies,
and ``JN-OUT`` first accepts the hub's own traffic (the hub and its proxy
reaching each session's server, and sessions reaching the hub's API port,
nothing else of the hub container), which ``enable_icc=false`` would
otherwise drop, then applies the same policy.

The rules are replaced in one ``iptables-restore`` transaction, so a change
of ``session_egress`` never leaves a moment without them. They stay when the
hub stops (the sessions may outlive a hub restart); ``remove()`` takes them
away with the network. Blocking (subprocess); callers use an executor.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import subprocess
import threading
from pathlib import Path

from . import host_namespaces

log = logging.getLogger(__name__)

MODES = ("public", "none")

#: destinations a session never reaches in ``public`` mode
BLOCKED = (
    "0.0.0.0/8",        # "this network"
    "10.0.0.0/8",       # private
    "100.64.0.0/10",    # carrier-grade NAT
    "127.0.0.0/8",      # loopback
    "169.254.0.0/16",   # link-local: cloud metadata services
    "172.16.0.0/12",    # private (Docker's own networks among them)
    "192.0.0.0/24",     # IETF protocol assignments
    "192.168.0.0/16",   # private
    "198.18.0.0/15",    # benchmarking
    "224.0.0.0/3",      # multicast and reserved
)

RESOLV_CONF = "/etc/resolv.conf"


class EgressError(RuntimeError):
    """The rules could not be read or written (no iptables, no permission)."""


def chain_names(bridge: str) -> tuple[str, str]:
    return f"JN-IN-{bridge}", f"JN-OUT-{bridge}"


_iptables: str | None = None
# concurrent starts (the pool starts several) must not both add the jumps
_lock = threading.Lock()


def iptables() -> str:
    """The iptables whose rules Docker writes (nft or legacy backend): the
    one that shows Docker's DOCKER-USER chain."""
    global _iptables
    if _iptables:
        return _iptables
    for name in ("iptables", "iptables-nft", "iptables-legacy"):
        path = shutil.which(name)
        if path and _run([path, "-w", "-S", "DOCKER-USER"], check=False).returncode == 0:
            _iptables = path
            return path
    raise EgressError(
        "no iptables shows Docker's DOCKER-USER chain: install iptables, run the hub as root, "
        "and keep Docker's iptables integration on")


def resolvers(resolv_conf: Path | None = None) -> list[str]:
    """The host's IPv4 name servers that Docker's embedded resolver forwards
    to from inside a container (loopback ones are asked from the host)."""
    found = []
    if resolv_conf is None:
        resolv_conf = Path(host_namespaces.host_path(RESOLV_CONF))
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                address = ipaddress.ip_address(parts[1])
            except ValueError:
                continue
            if address.version == 4 and not address.is_loopback:
                found.append(str(address))
    return found


def desired_rules(bridge: str, hub_ip: str, hub_port: int, mode: str,
                  dns: list[str], hub_in_container: bool = False) -> dict[str, list[str]]:
    """The rules of both chains, as ``iptables -S`` prints them. ``hub_ip``:
    the sessions network's gateway (hub on the host) or the hub container's
    address on that network."""
    if mode not in MODES:
        raise ValueError(f"session_egress must be one of {MODES}, not {mode!r}")
    chain_in, chain_out = chain_names(bridge)
    established = "-m conntrack --ctstate RELATED,ESTABLISHED"
    hub_api = f"-d {hub_ip}/32 -p tcp -m tcp --dport {int(hub_port)}"
    rules_in = [f"-A {chain_in} {established} -j ACCEPT"]
    rules_out = []
    if hub_in_container:
        rules_out += [
            f"-A {chain_out} -s {hub_ip}/32 -j ACCEPT",
            f"-A {chain_out} {hub_api} -j ACCEPT",
            f"-A {chain_out} -d {hub_ip}/32 {established} -j ACCEPT",
            f"-A {chain_out} -d {hub_ip}/32 -j REJECT --reject-with icmp-port-unreachable",
        ]
    else:
        rules_in.append(f"-A {chain_in} {hub_api} -j ACCEPT")
    rules_in.append(f"-A {chain_in} -j REJECT --reject-with icmp-port-unreachable")
    rules_out.append(f"-A {chain_out} {established} -j RETURN")
    if mode == "public":
        for server in dns:
            for proto in ("udp", "tcp"):
                rules_out.append(
                    f"-A {chain_out} -d {server}/32 -p {proto} -m {proto} --dport 53 -j RETURN")
        rules_out += [
            f"-A {chain_out} -d {net} -j REJECT --reject-with icmp-port-unreachable"
            for net in BLOCKED
        ]
        rules_out.append(f"-A {chain_out} -j RETURN")
    else:
        rules_out.append(f"-A {chain_out} -j REJECT --reject-with icmp-port-unreachable")
    return {chain_in: rules_in, chain_out: rules_out}


def current_rules(chain: str) -> list[str] | None:
    """The chain's rules as ``iptables -S`` prints them; None if it does not exist."""
    out = _run([iptables(), "-w", "-S", chain], check=False)
    if out.returncode != 0:
        return None
    return [line for line in out.stdout.splitlines() if line.startswith("-A ")]


def apply(bridge: str, hub_ip: str, hub_port: int, mode: str = "public",
          dns: list[str] | None = None, hub_in_container: bool = False) -> bool:
    """Make the rules for this bridge what ``mode`` asks; True if anything
    changed. Idempotent; one transaction."""
    with _lock:
        return _apply(bridge, hub_ip, hub_port, mode, resolvers() if dns is None else dns,
                      hub_in_container)


def _apply(bridge: str, hub_ip: str, hub_port: int, mode: str, dns: list[str],
           hub_in_container: bool) -> bool:
    wanted = desired_rules(bridge, hub_ip, hub_port, mode, dns, hub_in_container)
    chain_in, chain_out = chain_names(bridge)
    jumps = {
        "INPUT": f"-i {bridge} -j {chain_in}",
        "DOCKER-USER": f"-i {bridge} -j {chain_out}",
    }
    missing_jumps = [
        (parent, jump) for parent, jump in jumps.items()
        if _run([iptables(), "-w", "-C", parent, *jump.split()], check=False).returncode != 0
    ]
    if not missing_jumps and all(current_rules(c) == r for c, r in wanted.items()):
        return False
    lines = ["*filter"]
    for chain in wanted:
        if current_rules(chain) is None:
            lines.append(f":{chain} - [0:0]")
        else:
            lines.append(f"-F {chain}")
    for rules in wanted.values():
        lines += rules
    lines += [f"-I {parent} 1 {jump}" for parent, jump in missing_jumps]
    lines.append("COMMIT")
    _run([_restore(), "-w", "--noflush"], input="\n".join(lines) + "\n")
    log.info("session egress on %s: %s (hub %s:%s)", bridge, mode, hub_ip, hub_port)
    return True


def remove(bridge: str) -> None:
    """Take this bridge's chains and the jumps to them away (nothing if absent)."""
    chain_in, chain_out = chain_names(bridge)
    for parent, chain in (("INPUT", chain_in), ("DOCKER-USER", chain_out)):
        jump = ["-i", bridge, "-j", chain]
        while _run([iptables(), "-w", "-D", parent, *jump], check=False).returncode == 0:
            pass
        if current_rules(chain) is not None:
            _run([iptables(), "-w", "-F", chain])
            _run([iptables(), "-w", "-X", chain])


def prune() -> list[str]:
    """Remove the chains of bridges that no longer exist (networks removed
    while the hub was not looking); returns their bridges."""
    gone = []
    out = _run([iptables(), "-w", "-S"], check=False).stdout.splitlines()
    for line in out:
        if line.startswith("-N JN-OUT-"):
            bridge = line[len("-N JN-OUT-"):]
            if not Path(host_namespaces.host_path(f"/sys/class/net/{bridge}")).exists():
                remove(bridge)
                gone.append(bridge)
    return gone


def _restore() -> str:
    # iptables-restore, iptables-nft-restore, iptables-legacy-restore
    return iptables() + "-restore"


def _run(cmd: list[str], check: bool = True, input: str | None = None):
    """An iptables command, in the host's network namespace."""
    try:
        out = subprocess.run(host_namespaces.command("net", cmd), capture_output=True,
                             text=True, input=input, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EgressError(f"{cmd[0]}: {e}") from None
    if check and out.returncode != 0:
        raise EgressError(f"{' '.join(cmd[:3])} failed ({out.returncode}): {out.stderr.strip()}")
    return out
