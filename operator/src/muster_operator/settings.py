"""Settings of the operator process (``MUSTER_OPERATOR_*`` and Temporal's variables)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from muster_api import scheduling
from muster_runtime.settings import Port, ServiceSettings


class OperatorSettings(ServiceSettings):
    """How the operator watches Kubernetes and talks to Temporal."""

    model_config = SettingsConfigDict(env_prefix="MUSTER_OPERATOR_")

    namespaces: list[str] = Field(default_factory=list)
    """Kubernetes namespaces to watch (JSON list); empty: the whole cluster. Globs (team-*) make
    the operator watch namespaces too (RBAC: list/watch namespaces)."""
    resync_seconds: float = Field(default=60.0, gt=0)
    """How often each resource's Temporal state is checked for drift and status refreshed."""
    first_resync_seconds: float = Field(default=5.0, ge=0)
    """Seconds from the operator first seeing a resource to its first resync, which fills in
    Temporal's view (next and last runs) after a create; then every resync_seconds."""
    pollers_cache_seconds: float = Field(default=5.0, ge=0)
    """How long one DescribeTaskQueue answer (WorkerAvailable) serves every Schedule on that
    task queue; 0 asks Temporal on every reconcile."""
    policy_configmap: str = Field(default="muster-approval-policies", min_length=1)
    """ConfigMap the published policy snapshots are written to (mounted by the approval
    worker and the gateway)."""
    policy_configmap_namespace: str = Field(default="muster-system", min_length=1)
    """Namespace of that ConfigMap (the release's namespace)."""
    reminder_task_queue: str = Field(default=scheduling.TASK_QUEUE, min_length=1)
    """Task queue of the scheduling worker, which runs policies' reminder workflows."""
    watch_server_timeout: int = Field(default=300, ge=10)
    """Seconds the API server keeps a watch open before kopf re-lists (kopf's default never
    times out, so a silently dropped connection would go unnoticed)."""
    watch_client_timeout: int = Field(default=330, ge=10)
    """Client-side bound on one watch request (a little above the server's)."""
    liveness_port: Port = 8080
    """Port of kopf's liveness endpoint (/healthz)."""
    max_concurrent_reconciles: int = Field(default=10, ge=1, le=1000)
    """Reconciles that run at once (controller-runtime's MaxConcurrentReconciles); more
    wait in line, changes before periodic resyncs, measured by
    workqueue_queue_duration_seconds."""
    max_backoff_seconds: float = Field(default=60.0, gt=0)
    """Longest wait between retries while Temporal is unreachable."""
