"""Local stack: the Temporal dev server, a Kubernetes control plane, and Muster's services
as supervised local processes, for ``muster up`` and the test fixtures."""
