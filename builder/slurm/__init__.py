"""The Slurm workload on the build host: its model section (model.py: chaos.yaml's
`workload:`) and checks (checks.py). What a node gets is builder/features/slurm.py and
overlays/slurm/, the node side chaosnode/slurm.py, the munge key builder/mungekey.py."""
