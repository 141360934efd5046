"""tyd on the build host: its model section (model.py: chaos.yaml's `tyd:`) and its checks
(checks.py). tyd.json is builder/tydconf.py, the daemon itself the top-level tyd/ package."""
