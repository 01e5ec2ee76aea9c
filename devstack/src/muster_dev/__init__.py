"""Muster's development stack, never shipped in an image: ``muster up`` (the Temporal dev
server and every service as supervised local processes), the local Kubernetes control plane,
the local mailbox, the configuration reference generator, and the one table of local
service definitions."""
