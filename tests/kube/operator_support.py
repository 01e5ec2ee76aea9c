"""The operator under test: a real ``python -m muster_operator`` process against the kube
tier's control plane and the session's Temporal dev server, plus small API helpers."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from temporalio.client import Client, ScheduleDescription
from temporalio.service import RPCError, RPCStatusCode

from muster_dev.kube import KubeAccess
from muster_dev.process import ManagedProcess, free_port
from muster_runtime.polling import PollTimeout, wait_until
from tests.helpers import http_get, start_service

GROUP, VERSION = "muster.io", "v1alpha1"
CRD_DIR = Path(__file__).resolve().parents[2] / "charts" / "muster" / "files" / "crds"


@dataclass
class OperatorProcess:
    """One operator process; ``restart()`` keeps its settings."""

    env: dict[str, str]
    log: Path
    process: ManagedProcess | None = None
    metrics_port: int = field(default_factory=free_port)
    liveness_port: int = field(default_factory=free_port)
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        env = {
            **self.env,
            "MUSTER_OPERATOR_HTTP__HOST": "127.0.0.1",
            "MUSTER_OPERATOR_HTTP__PORT": str(self.metrics_port),
            "MUSTER_OPERATOR_LIVENESS_PORT": str(self.liveness_port),
            "MUSTER_OPERATOR_LOG__FORMAT": "text",
        }
        self.process = start_service(
            "muster_operator", env, self.log.with_suffix(f".{self.starts}.log")
        )

        def alive() -> bool:
            assert self.process is not None
            assert self.process.running(), f"operator exited:\n{self.process.tail()}"
            try:
                return http_get(f"http://127.0.0.1:{self.liveness_port}/healthz")[0] == 200
            except OSError:
                return False

        wait_until(alive, what="the operator's liveness endpoint", timeout=60)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=20)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def metrics(self) -> str:
        return http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")[1]

    def tail(self) -> str:
        return self.process.tail(60) if self.process else "(not running)"


def operator_env(
    kube: KubeAccess, temporal_address: str, *, namespaces: list[str], policy_namespace: str
) -> dict[str, str]:
    """Environment of an operator watching ``namespaces`` (globs allowed)."""
    return {
        **kube.env(),
        "TEMPORAL_ADDRESS": temporal_address,
        "TEMPORAL_NAMESPACE": "default",
        "MUSTER_OPERATOR_NAMESPACES": json.dumps(namespaces),
        "MUSTER_OPERATOR_RESYNC_SECONDS": "1",
        "MUSTER_OPERATOR_FIRST_RESYNC_SECONDS": "1",
        "MUSTER_OPERATOR_MAX_BACKOFF_SECONDS": "2",
        "MUSTER_OPERATOR_POLICY_CONFIGMAP_NAMESPACE": policy_namespace,
        "OTEL_SDK_DISABLED": "true",
        "PATH": os.environ.get("PATH", ""),
    }


class Resources:
    """Muster custom resources of one kind in one namespace."""

    def __init__(
        self, api: client.CustomObjectsApi, namespace: str, plural: str, kind: str
    ) -> None:
        self.api, self.namespace, self.plural, self.kind = api, namespace, plural, kind

    def body(self, name: str, spec: Mapping[str, Any], **metadata: Any) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": self.kind,
            "metadata": {"name": name, **metadata},
            "spec": dict(spec),
        }

    def create(self, name: str, spec: Mapping[str, Any], **metadata: Any) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self.api.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, self.plural, self.body(name, spec, **metadata)
            ),
        )

    def get(self, name: str) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self.api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, self.plural, name
            ),
        )

    def patch(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self.api.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, self.plural, name, dict(patch)
            ),
        )

    def delete(self, name: str) -> None:
        self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, self.plural, name)

    def gone(self, name: str) -> bool:
        try:
            self.get(name)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        for condition in (self.get(name).get("status") or {}).get("conditions") or []:
            if condition["type"] == kind:
                return cast(dict[str, Any], condition)
        return None

    def wait_condition(
        self, name: str, kind: str, status: str, reason: str | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            found = self.condition(name, kind)
            if found and found["status"] == status and reason in (None, found["reason"]):
                return found
            return None

        return wait_until(
            check, what=f"{self.kind} {name}: {kind}={status} ({reason})", timeout=timeout
        )

    def wait_synced(self, name: str, timeout: float = 30) -> dict[str, Any]:
        """The resource once status says the current generation is in Temporal. (A
        namespace created just after the operator started was once served only when the
        test's deadline had passed and its namespace was deleted: kopf had dropped it, which
        ``muster_operator.namespaces`` fixes.)"""

        def check() -> dict[str, Any] | None:
            body = self.get(name)
            status = body.get("status") or {}
            ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
            if (
                status.get("observedGeneration") == body["metadata"]["generation"]
                and ready
                and ready[0]["status"] == "True"
            ):
                return body
            return None

        try:
            return wait_until(check, what=f"{self.kind} {name} to be Ready", timeout=timeout)
        except PollTimeout as exc:
            body = self.get(name)
            raise PollTimeout(
                f"{exc}; generation {body['metadata'].get('generation')}, status "
                f"{json.dumps(body.get('status'))[:3000]}"
            ) from None


def events(
    core: client.CoreV1Api, namespace: str, name: str
) -> list[tuple[str | None, str | None, str | None]]:
    """``(type, reason, message)`` of the Events about one object."""
    listed = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return [(e.type, e.reason, e.message) for e in listed.items]


def spec(task_queue: str, **extra: Any) -> dict[str, Any]:
    """A daily 06:00 UTC schedule of a workflow nobody runs (actions still count)."""
    return {
        "cron": ["0 6 * * *"],
        "timeZone": "UTC",
        "workflow": {"type": "OperatorTestNoop", "taskQueue": task_queue},
        **extra,
    }


async def describe_or_none(client: Client, schedule_id: str) -> ScheduleDescription | None:
    """Temporal's description of a schedule, None when there is none."""
    try:
        return await client.get_schedule_handle(schedule_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def actions(client: Client, schedule_id: str) -> int:
    """How many actions a schedule has taken."""
    described = await client.get_schedule_handle(schedule_id).describe()
    return described.info.num_actions


def delete_all(api: client.CustomObjectsApi, prefix: str, timeout: float = 60) -> None:
    """Delete every Schedule, ApprovalPolicy and WorkerDeployment in the namespaces starting
    with ``prefix``
    while the operator still runs, so the next test module's operator does not inherit
    them (the local plane has no namespace controller to do it); finalizers still held at
    the deadline are removed."""

    def left() -> list[tuple[str, str, str]]:
        found = []
        for plural in ("schedules", "approvalpolicies", "workerdeployments"):
            listed = cast(dict[str, Any], api.list_cluster_custom_object(GROUP, VERSION, plural))
            for item in listed["items"]:
                metadata = item["metadata"]
                if metadata["namespace"].startswith(prefix):
                    found.append((plural, metadata["namespace"], metadata["name"]))
        return found

    for plural, namespace, name in left():
        try:
            api.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except ApiException as exc:
            if exc.status != 404:
                raise
    try:
        wait_until(lambda: not left(), what="the test resources to be deleted", timeout=timeout)
    except PollTimeout:
        for plural, namespace, name in left():
            api.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, {"metadata": {"finalizers": None}}
            )


# -- the admission webhook, served by an operator outside the cluster ------------------------

WEBHOOK_PATHS = {
    "schedules": "validate-schedule",
    "approvalpolicies": "validate-approvalpolicy",
    "workerdeployments": "validate-workerdeployment",
}
"""URL paths of the operator's webhook (its kopf handler ids; the chart uses the same)."""


def webhook_env(
    port: int, *, secret: str, secret_namespace: str, configuration: str, **extra: str
) -> dict[str, str]:
    """Settings of an operator that serves the webhook on 127.0.0.1:``port`` with a
    self-signed certificate for 127.0.0.1, kept in ``secret`` and trusted by
    ``configuration``; ``extra`` are more MUSTER_OPERATOR_WEBHOOK__* settings (lower case)."""
    env = {
        "MUSTER_OPERATOR_WEBHOOK__ENABLED": "true",
        "MUSTER_OPERATOR_WEBHOOK__HOST": "127.0.0.1",
        "MUSTER_OPERATOR_WEBHOOK__PORT": str(port),
        "MUSTER_OPERATOR_WEBHOOK__TLS_SECRET": secret,
        "MUSTER_OPERATOR_WEBHOOK__TLS_SECRET_NAMESPACE": secret_namespace,
        "MUSTER_OPERATOR_WEBHOOK__DNS_NAMES": json.dumps(["127.0.0.1"]),
        "MUSTER_OPERATOR_WEBHOOK__CONFIGURATION": configuration,
        "MUSTER_OPERATOR_WEBHOOK__CHECK_SECONDS": "2",
    }
    env.update({f"MUSTER_OPERATOR_WEBHOOK__{k.upper()}": v for k, v in extra.items()})
    return env


def validating_configuration(name: str, port: int, label: tuple[str, str]) -> dict[str, Any]:
    """A ValidatingWebhookConfiguration like the chart's, calling ``https://127.0.0.1:port``
    (``clientConfig.url``: the operator runs outside the cluster) for namespaces labelled
    ``label``, without a CA bundle (the operator patches it in)."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": f"{plural}.validate.muster.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 10,
                "clientConfig": {"url": f"https://127.0.0.1:{port}/{path}"},
                "rules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "resources": [plural],
                        "operations": ["CREATE", "UPDATE"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {"matchLabels": {label[0]: label[1]}},
            }
            for plural, path in WEBHOOK_PATHS.items()
        ],
    }


def ca_bundle(admission: client.AdmissionregistrationV1Api, name: str) -> bytes | None:
    """The CA bundle of a configuration's first webhook (None until one is set)."""
    config = admission.read_validating_webhook_configuration(name)
    webhooks = config.webhooks or []
    raw = webhooks[0].client_config.ca_bundle if webhooks else None
    return base64.b64decode(raw) if raw else None
