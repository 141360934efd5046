"""IPsec between members (overlays/ipsec/): strongswan.conf and swanctl.conf, one IKEv2
connection per known peer from the one definition in chaosnode.ipsec."""

from __future__ import annotations

from ipaddress import IPv4Address

from chaosnode import ipsec
from chaosnode.paths import CA_CERT, NODE_CERT, VICI_SOCKET

from ..model import Cluster, Node
from ..views import NodeView, Peer, ipsec_policy
from .feature import Feature, Fields

SWANCTL_PLUGINS = "random nonce x509 revocation constraints pubkey pkcs1 pkcs8 pem openssl"
CHARON_PLUGINS = (
    "random nonce x509 revocation constraints pubkey pkcs1 pkcs8 pem openssl "
    "kdf kernel-netlink socket-default vici updown"
)


def swanctl_lines(section: ipsec.Section, depth: int = 1) -> tuple[str, ...]:
    """A nested section in swanctl.conf syntax, in the definition's order, one line each."""
    pad = "    " * depth
    out: list[str] = []
    for key, value in section.items():
        if isinstance(value, dict):
            out += [f"{pad}{key} {{", *swanctl_lines(value, depth + 1), f"{pad}}}"]
        else:
            out.append(f"{pad}{key} = {value if isinstance(value, str) else ', '.join(value)}")
    return tuple(out)


def connections(policy: ipsec.Policy, peers: tuple[Peer, ...]) -> tuple[str, ...]:
    certs = ipsec.Certs(node=NODE_CERT, ca=CA_CERT)
    section: ipsec.Section = {}
    for p in peers:
        section.update(ipsec.connection(policy, p.name, IPv4Address(p.address), certs))
    return swanctl_lines(section)


def fields(cluster: Cluster, node: Node, core: NodeView) -> Fields:
    return {
        "connections": connections(ipsec_policy(cluster, node), core.peers),
        "charon_plugins": CHARON_PLUGINS,
        "vici_socket": VICI_SOCKET,
        "swanctl_plugins": SWANCTL_PLUGINS,
    }


def packages(cluster: Cluster) -> tuple[str, ...]:
    # strongSwan's openssl plugin provides X25519, Ed25519, AES-GCM and ChaCha20-Poly1305.
    # netbase: /etc/protocols and /etc/services: charon resolves selectors like
    # 10.0.0.1/32[tcp/7411] through them; without it a port-scoped config is "invalid value
    # for: local_ts".
    return ("charon-systemd", "strongswan-swanctl", "libstrongswan-standard-plugins", "netbase")


FEATURE = Feature(name="ipsec", fields=fields, units=("strongswan.service",), packages=packages)
