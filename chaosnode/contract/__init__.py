"""The contract between chaos-build and the nodes, declared once and imported by both sides:
`paths` (every file, socket and nft object they agree on) and the records chaos-build renders
into /etc/chaos for the node programs: `node` (node.json), `slurm` (slurm.json), `night`
(night.json), each a frozen dataclass with dumps/loads (`record`). tyd's own file, tyd.json,
is tyd.config. Nothing here runs on its own; the node programs are the modules beside it.
"""
