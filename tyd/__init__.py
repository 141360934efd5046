"""tyd: the authenticated Terrence-and-Philip discovery daemon of a chaos cluster.

Layers, inner to outer: `member` (what a map entry is), `codec` (frames, no I/O),
`membership` (the cluster map with an injected clock), `tls` and `transport` (mutual TLS,
frames with timeouts), `daemon` (one asyncio lifecycle), and the adapters at the edge:
`nft`, `ipsec` (VICI), `exports` and `status`. Runtime needs only the stdlib, `vici` and
`chaosnode` (the IPsec connection every peer gets).
"""

__version__ = "0.1.0"
