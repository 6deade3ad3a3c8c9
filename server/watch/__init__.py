"""Watch lists: what a team installs, kept on the index for its targets by Celery beat.

``lists`` reads and checks the watch file (TOML; the old prebuild file is read as one too),
``run`` ensures one list and sorts its failures (retried, given up, or needing a capability no
worker has), ``server.schedule`` is the beat process and its Celery tasks.
"""
