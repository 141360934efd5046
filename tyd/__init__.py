"""tyd: the authenticated Terrence-and-Philip discovery daemon of a chaos cluster.

Layers, inner to outer: `member` (what a map entry is), `codec` (frames, no I/O),
`membership` (the cluster map with an injected clock), `tls` and `transport` (mutual TLS,
frames with timeouts), `daemon` (one asyncio lifecycle), and the adapters at the edge:
`nft`, `ipsec` (VICI), `exports` and `status`. Every map entry is a self-certifying record
(`record`: signed by its own member). Runtime needs the stdlib, `vici`, `cryptography`
(Debian's python3-cryptography) and `chaosnode` (the IPsec connection every peer gets, the
CA-signature check).
"""

__version__ = "0.1.0"
