"""Settings of the operator process (``MUSTER_OPERATOR_*`` and Temporal's variables)."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import SettingsConfigDict

from muster_api import scheduling
from muster_runtime.settings import Port, ServiceSettings


class WebhookSettings(BaseModel):
    """The validating admission webhook the operator serves (``MUSTER_OPERATOR_WEBHOOK__*``)."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    enabled: bool = False
    """Serve the admission webhook over HTTPS (the chart turns it on and registers it in a
    ValidatingWebhookConfiguration)."""
    host: str = "0.0.0.0"  # noqa: S104 - the API server calls in from outside the pod
    """Address the webhook listens on."""
    port: Port = 9443
    """Port the webhook listens on."""
    tls_secret: str = ""
    """Secret that holds the serving certificate (tls.crt, tls.key) and the CA bundle
    (ca.crt); required when enabled."""
    tls_secret_namespace: str = ""
    """Namespace of that Secret (the release's); required when enabled."""
    self_signed: bool = True
    """true: the operator makes its own CA and serving certificate, keeps them in the
    Secret, renews them before they expire and patches the CA into the webhook
    configuration; false: someone else (cert-manager) writes the Secret and the CA bundle,
    and the operator only reads it."""
    dns_names: list[str] = Field(default_factory=list)
    """Names (and IP addresses) the self-signed certificate is for: the webhook Service's
    DNS names (JSON list)."""
    configuration: str = ""
    """The ValidatingWebhookConfiguration whose caBundle the operator keeps (self-signed)."""
    certificate_days: float = Field(default=90.0, gt=0)
    """Lifetime of a self-signed serving certificate."""
    renew_before_days: float = Field(default=30.0, gt=0)
    """A serving certificate is replaced when it has less than this left."""
    ca_days: float = Field(default=3650.0, gt=0)
    """Lifetime of the self-signed CA."""
    ca_renew_before_days: float = Field(default=365.0, gt=0)
    """A new CA joins the bundle when the current one has less than this left; the old one
    stays trusted until it expires, so no request ever meets an untrusted certificate."""
    check_seconds: float = Field(default=300.0, gt=0)
    """How often the certificate is checked (and a renewal by cert-manager picked up)."""
    temporal_cache_seconds: float = Field(default=10.0, ge=0)
    """How long an answer from Temporal (a namespace exists, its search attributes) is
    reused for later admission requests."""
    temporal_timeout_seconds: float = Field(default=3.0, gt=0)
    """How long an admission request waits for Temporal before it admits the resource with
    a warning (the namespace and search attributes then are checked when the operator
    reconciles it)."""

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if not self.enabled:
            return self
        if not (self.tls_secret and self.tls_secret_namespace):
            raise ValueError(
                "the webhook needs tls_secret and tls_secret_namespace (the Secret with its "
                "serving certificate)"
            )
        if self.self_signed and not (self.dns_names and self.configuration):
            raise ValueError(
                "a self-signed webhook certificate needs dns_names (the Service's DNS names) "
                "and configuration (the ValidatingWebhookConfiguration to put its CA in)"
            )
        if self.renew_before_days >= self.certificate_days:
            raise ValueError("renew_before_days must be shorter than certificate_days")
        if self.ca_renew_before_days >= self.ca_days:
            raise ValueError("ca_renew_before_days must be shorter than ca_days")
        return self


class RolloutSettings(BaseModel):
    """Worker rollouts (``WorkerDeployment``; ``MUSTER_OPERATOR_ROLLOUT__*``)."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    interval_seconds: float = Field(default=10.0, gt=0)
    """How often each WorkerDeployment is reconciled: pollers, the replay gate, ramp steps,
    drainage and alerts are checked this often."""
    prometheus_url: str = ""
    """The Prometheus (base URL, like http://prometheus.monitoring:9090) that evaluates
    Muster's alerts; a new build that one of them fires for is rolled back. Empty: no
    automatic rollback."""
    prometheus_timeout_seconds: float = Field(default=5.0, gt=0)
    """How long one question to Prometheus may take."""


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
    max_object_bytes: int = Field(default=1_572_864, ge=65_536)
    """The largest object the cluster's API server stores (etcd's --max-request-bytes,
    1.5 MiB by default): a resource whose status may not fit below it gets a Warning Event
    (ObjectTooLarge), since its conditions can then not be written."""
    webhook: WebhookSettings = WebhookSettings()
    """The validating admission webhook."""
    rollout: RolloutSettings = RolloutSettings()
    """Worker rollouts."""
