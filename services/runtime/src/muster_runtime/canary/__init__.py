"""The canary: a tiny worker that proves a Muster stack works end to end.

``muster up`` starts it and ``muster ping`` runs one ``CanaryPing`` workflow through it,
which exercises the Temporal connection, the data converter, tracing, metrics and the
worker's probes.
"""

TASK_QUEUE = "muster-canary"
