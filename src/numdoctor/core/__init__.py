"""The supervision core: one way to start, watch, dump, kill and judge a process tree.

Every front end that runs code it does not trust stands on this package: `numdoctor run`
(and through it `numdoctor.isolate()`, the Jupyter isolated cell and `probe`'s scenarios),
`check`'s isolated collector and the pytest plugin.

It imports only the standard library (and psutil where noted), so that it can sit on the
start-up path of `numdoctor check` and inside a forked test worker.
"""
