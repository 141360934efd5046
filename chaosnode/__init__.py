"""Code that runs on the cluster nodes (installed into the live image beside tyd).

`paths` names every file, socket and nft object both sides agree on; the builder imports it
to render, the node-side programs to find what was rendered. `ipsec` is the IPsec connection
to one peer: chaos-build renders it into swanctl.conf, tyd loads it through VICI.
"""
