"""The firewall on the build host: its model section (model.py: chaos.yaml's `firewall:`) and
the checks of every service list (checks.py). The rules are builder/features/firewall.py, the
template overlays/firewall/."""
