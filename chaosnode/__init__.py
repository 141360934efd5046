"""Code that runs on the cluster nodes (installed into the live image beside tyd).

`contract` is what both sides agree on (paths, and the records chaos-build renders into
/etc/chaos); the builder imports it to render, the node programs to find what was rendered.
`files` and `console` are the one atomic_write and the one say of every chaos program.
`ipsec` is the IPsec connection to one peer: chaos-build renders it into swanctl.conf, tyd
loads it through VICI.
"""
