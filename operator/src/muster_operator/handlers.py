"""The operator's kopf registry: start-up and clean-up, and the handlers of every kind
(:mod:`muster_operator.schedules`, :mod:`muster_operator.approvalpolicies`,
:mod:`muster_operator.workerdeployments`).

Nothing is registered at import time: :func:`build_registry` takes the settings the process
loaded at start, so intervals and timeouts come from them and tests can build their own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from prometheus_client import start_http_server

from muster_api import v1alpha1
from muster_operator import approvalpolicies, metrics, schedules, workerdeployments
from muster_operator.admission import (
    Refused,
    review_policy,
    review_schedule,
    review_worker_deployment,
)
from muster_operator.context import FINALIZER, Operator, operator_of
from muster_operator.diffbase import DigestDiffBaseStorage
from muster_operator.reconcile import TemporalUnavailable
from muster_operator.settings import OperatorSettings
from muster_operator.webhook import CertificateKeeper, WebhookServer
from muster_runtime.settings import TemporalSettings

log = logging.getLogger(__name__)


def configure(settings: kopf.OperatorSettings, operator: OperatorSettings) -> None:
    """kopf's settings, chosen on purpose."""
    settings.persistence.finalizer = FINALIZER
    # kopf's bookkeeping goes into status.kopf (its own subtree in the CRD schema), so
    # finishing a reconcile is one write to the status subresource; in annotations it is
    # a second PATCH of the object per reconcile, which doubles the API server's load.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(
        field="status.kopf.progress", touch_field="status.kopf.dummy"
    )
    # The diff base as digests, never a copy of the spec: a copy doubles the object, and a
    # spec of half etcd's request limit then makes every status write fail.
    settings.persistence.diffbase_storage = DigestDiffBaseStorage()
    settings.watching.server_timeout = operator.watch_server_timeout
    settings.watching.client_timeout = operator.watch_client_timeout
    settings.watching.connect_timeout = 30
    # kopf's own log lines are not Events: they repeat the conditions once per retry ("Handler
    # 'sync' failed temporarily" every backoff, for every resource, during an outage). The
    # operator's notices (Triggered, Backfilled, ...) are posted with kopf.event, which only
    # posting.enabled governs (muster_operator.context.event).
    settings.posting.loggers = False
    settings.posting.level = logging.WARNING
    settings.networking.request_timeout = 60
    # A resource deleted while its resync runs keeps its finalizer until kopf sees the timer
    # exit; kopf looks again only every 60 s by default.
    settings.background.cancellation_polling = 1
    # No dynamic scanning of CRDs and namespaces: the operator serves the resources that
    # exist at start-up (the chart installs the CRDs first) in the namespaces it is given,
    # so its RBAC needs no cluster-wide list/watch of CRDs and namespaces. Namespace globs
    # ("team-*") need that scanning, and then list/watch on namespaces.
    settings.scanning.disabled = not any(
        char in pattern for pattern in operator.namespaces for char in "*?["
    )


def build_registry(settings: OperatorSettings, temporal: TemporalSettings) -> kopf.OperatorRegistry:
    """Every handler of the operator, bound to the settings loaded at start."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """In-cluster ServiceAccount or kubeconfig, as the kubernetes client finds them (a
        registry of one's own has none of kopf's default login handlers)."""
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        """kopf settings, metrics endpoint, clients."""
        configure(settings, operator_settings)
        start_http_server(operator_settings.http.port, addr=operator_settings.http.host)
        operator = Operator(operator_settings, temporal)
        try:
            k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            await asyncio.to_thread(k8s_config.load_kube_config)
        operator.core = k8s.CoreV1Api()
        operator.apps = k8s.AppsV1Api(operator.core.api_client)
        operator.batch = k8s.BatchV1Api(operator.core.api_client)
        if operator_settings.rollout.prometheus_url:
            operator.http = httpx.AsyncClient()
        memo["operator"] = operator
        if operator_settings.webhook.enabled:
            # The API server calls in; the chart's ValidatingWebhookConfiguration names the
            # paths (the handler ids below) and failurePolicy: Fail.
            keeper = CertificateKeeper(operator_settings.webhook, operator.core.api_client)
            settings.admission.server = WebhookServer(operator_settings.webhook, keeper)
        try:
            await operator.clients()
            metrics.TEMPORAL_UP.set(1)
        except TemporalUnavailable as exc:
            # The operator stays up; handlers report the condition and retry with backoff.
            log.warning("%s; resources will say so until it is reachable", exc)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        """Close the Kubernetes client (the Temporal connection closes with the process)."""
        operator = memo.get("operator")
        if isinstance(operator, Operator) and operator.http is not None:
            await operator.http.aclose()
        if isinstance(operator, Operator) and operator.core is not None:
            operator.core.api_client.close()

    operator_settings = settings
    schedules.register(registry, settings)
    approvalpolicies.register(registry, settings)
    workerdeployments.register(registry, settings)
    if settings.webhook.enabled:
        register_webhooks(registry, settings, temporal)
    return registry


SCHEDULE_WEBHOOK = "validate-schedule"
POLICY_WEBHOOK = "validate-approvalpolicy"
WORKER_WEBHOOK = "validate-workerdeployment"
"""Handler ids, which are also the webhook's URL paths (``/validate-schedule``)."""


def register_webhooks(
    registry: kopf.OperatorRegistry, settings: OperatorSettings, temporal: TemporalSettings
) -> None:
    """The validating admission handlers of both kinds (:mod:`muster_operator.admission`)."""
    group, version = v1alpha1.GROUP, v1alpha1.VERSION

    @kopf.on.validate(
        group, version, schedules.PLURAL, id=SCHEDULE_WEBHOOK,
        operations=["CREATE", "UPDATE"], registry=registry,
    )  # fmt: skip
    async def validate_schedule(
        *, body: kopf.Body, warnings: list[str], memo: Any, **kwargs: Any
    ) -> None:
        """Refuse what the reconciler (or Temporal) would refuse, with its message."""
        operator = operator_of(memo)
        try:
            warnings += await review_schedule(
                body,
                kwargs.get("old"),
                kwargs.get("operation"),
                clients=operator.clients,
                default_namespace=temporal.namespace,
                facts=operator.facts,
            )
        except Refused as exc:
            raise kopf.AdmissionError(str(exc), code=422) from None

    @kopf.on.validate(
        group, version, approvalpolicies.PLURAL, id=POLICY_WEBHOOK,
        operations=["CREATE", "UPDATE"], registry=registry,
    )  # fmt: skip
    async def validate_policy(*, body: kopf.Body, **kwargs: Any) -> None:
        """Refuse what the reconciler would refuse, with its message."""
        try:
            review_policy(body, kwargs.get("old"), kwargs.get("operation"))
        except Refused as exc:
            raise kopf.AdmissionError(str(exc), code=422) from None

    @kopf.on.validate(
        group, version, workerdeployments.PLURAL, id=WORKER_WEBHOOK,
        operations=["CREATE", "UPDATE"], registry=registry,
    )  # fmt: skip
    async def validate_worker(*, body: kopf.Body, memo: Any, **kwargs: Any) -> None:
        """Refuse what the reconciler would refuse, and a pod template Kubernetes refuses."""
        apps = operator_of(memo).apps
        try:
            await review_worker_deployment(
                body,
                kwargs.get("old"),
                kwargs.get("operation"),
                dry_run=workerdeployments.dry_run(apps) if apps is not None else None,
            )
        except Refused as exc:
            raise kopf.AdmissionError(str(exc), code=422) from None
