"""Publishing policy snapshots into the ConfigMap that the approval worker and the gateway
mount: one key per policy, written (or removed) without touching the others."""

from __future__ import annotations

import asyncio

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

LABELS = {"app.kubernetes.io/part-of": "muster", "app.kubernetes.io/managed-by": "muster-operator"}


def write_key(core: k8s.CoreV1Api, name: str, namespace: str, key: str, text: str | None) -> None:
    """Set (or with None remove) one key of the ConfigMap, creating it when missing."""
    try:
        core.patch_namespaced_config_map(name, namespace, {"data": {key: text}})
        return
    except ApiException as exc:
        if exc.status != 404:
            raise
    if text is None:
        return
    try:
        core.create_namespaced_config_map(
            namespace,
            k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name, labels=LABELS), data={key: text}),
        )
    except ApiException as exc:
        if exc.status != 409:
            raise
        # Another policy created it first: add ours to it.
        core.patch_namespaced_config_map(name, namespace, {"data": {key: text}})


async def publish(
    core: k8s.CoreV1Api, name: str, namespace: str, key: str, text: str | None
) -> None:
    """:func:`write_key` off the event loop (the Kubernetes client blocks)."""
    await asyncio.to_thread(write_key, core, name, namespace, key, text)
