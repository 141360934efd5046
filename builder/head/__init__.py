"""The always-on head (issue 21): users, their ssh login, homes over NFSv4 and the queue
across nights. Its model section is model.py (users, users_file, login_from; a node's
always_on and state_disk are the core Node's); this package checks them (checks.py), reads the
users file
and ssh keys (users.py) and computes what the templates need (view.py). The node side is
chaosnode/statedisk.py (the disk guard)."""
