"""serve's event record and admin view: what happened to every PC tonight.

events.py   the record (SQLite, WAL, one writer thread behind a bounded queue)
logs.py     boot answers from dnsmasq's log-dhcp lines and nginx's access log
push.py     members push facts about themselves (mutual TLS with their node certificate)
status.py   every PC's state now or at the end of a night; cli.py `chaos-build status`
night.py    the page's figures of a night (timeline, boot to join, refusals); metrics.py
            the same as /metrics (prometheus_client)
web.py      the admin listener: the page and /metrics (token login, loopback by default)
listener.py the background HTTP listener both share
hooks.py    what `chaos-build serve` starts and stops (the only calls serve makes)
"""
