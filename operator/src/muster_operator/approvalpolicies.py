"""kopf handlers of ``ApprovalPolicy``: publish the policy snapshot that requests pin (into
the ConfigMap the approval worker and the gateway mount), keep its reminder schedule in
Temporal, and count its pending requests for status. Pure parts live in
:mod:`muster_operator.policies`, the ConfigMap write in :mod:`muster_operator.publish`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import kopf
import yaml
from temporalio.client import Client

from muster_api import v1alpha1
from muster_operator import metrics
from muster_operator.context import (
    Operator,
    check_size,
    event,
    fail,
    now,
    operator_of,
    reconcile_now,
    release_finalizer,
    resync,
)
from muster_operator.policies import (
    key_of,
    parse_policy,
    pending_requests,
    policy_document,
    policy_key,
    reminder_id,
    reminder_owner,
    reminder_schedule,
)
from muster_operator.publish import publish
from muster_operator.reconcile import Want, classify, merge_conditions
from muster_operator.settings import OperatorSettings
from muster_operator.sync import apply_schedule, check_and_correct, delete_owned

log = logging.getLogger(__name__)

PLURAL = "approvalpolicies"


def write_status(
    body: Mapping[str, Any], patch: kopf.Patch, synced: Want, published: Want | None = None
) -> None:
    """Patch the policy's conditions (Ready follows Synced)."""
    status = body.get("status") or {}
    wanted = [
        Want("Ready", synced.status, synced.reason, synced.message),
        synced,
    ]
    if published is not None:
        wanted.append(published)
    patch.status["conditions"] = merge_conditions(
        status.get("conditions") or [], wanted, now(), body["metadata"].get("generation")
    )


async def _publish(operator: Operator, policy: v1alpha1.ApprovalPolicy, text: str | None) -> None:
    assert operator.core is not None, "the startup handler did not run"
    await publish(
        operator.core,
        operator.settings.policy_configmap,
        operator.settings.policy_configmap_namespace,
        policy_key(policy),
        text,
    )


async def _delete_reminders(client: Client, namespace: str, name: str) -> str:
    return await delete_owned(client, reminder_id(namespace, name), reminder_owner(namespace, name))


async def reconcile(
    body: kopf.Body, patch: kopf.Patch, memo: Any, retry: int, *, drift_check: bool
) -> None:
    """Publish the snapshot, keep the reminder schedule, count pending requests."""
    operator = operator_of(memo)
    check_size(body, memo, operator.settings)
    published: Want | None = None

    def report(want: Want) -> None:
        write_status(body, patch, want, published)

    try:
        policy = parse_policy(body)
        document = policy_document(policy)
        await _publish(operator, policy, yaml.safe_dump(document, sort_keys=False))
        published = Want(
            "Published",
            "True",
            "Published",
            f"snapshot in ConfigMap {operator.settings.policy_configmap_namespace}/"
            f"{operator.settings.policy_configmap}",
        )
        patch.status["publishedSha256"] = document["metadata"]["annotations"]["muster.io/sha256"]
        reminders = reminder_schedule(policy, operator.settings.reminder_task_queue)
        client = (await operator.clients()).default
        if reminders is None:
            await _delete_reminders(client, policy.metadata.namespace, policy.metadata.name)
            patch.status["reminderScheduleId"] = None
        elif drift_check:
            result = await check_and_correct(
                client, reminders, (body.get("status") or {}).get("reminderFingerprint")
            )
            if result.drift is not None and result.drift.changed:
                metrics.DRIFT_CORRECTIONS.labels("approvalpolicy").inc()
                event(body, "Warning", "DriftCorrected", result.drift.reason)
            patch.status["reminderScheduleId"] = result.schedule_id
            patch.status["reminderFingerprint"] = result.fingerprint
        else:
            result = await apply_schedule(client, reminders)
            patch.status["reminderScheduleId"] = result.schedule_id
            patch.status["reminderFingerprint"] = result.fingerprint
        pending = await pending_requests(client, policy)
        patch.status["pendingRequests"] = pending
        metrics.APPROVALS_PENDING.labels(policy.metadata.name).set(pending)
        metrics.TEMPORAL_UP.set(1)
    except Exception as exc:
        fail(
            exc,
            body=body,
            retry=retry,
            settings=operator.settings,
            report=report,
            what="ApprovalPolicy",
        )
    patch.status["observedGeneration"] = body["metadata"].get("generation")
    patch.status["lastSyncTime"] = now().isoformat()
    write_status(
        body,
        patch,
        Want("Synced", "True", "Synced", "policy published and reminders scheduled"),
        published,
    )


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    """Add the ApprovalPolicy handlers to ``registry``."""
    group, version = v1alpha1.GROUP, v1alpha1.VERSION

    @kopf.on.resume(group, version, PLURAL, id="sync", registry=registry)
    @kopf.on.create(group, version, PLURAL, id="sync", registry=registry)
    @kopf.on.update(group, version, PLURAL, id="sync", field="spec", registry=registry)
    async def sync_policy(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, reason: str, **_: Any
    ) -> None:
        """Publish the policy snapshot and keep its reminder schedule."""
        await reconcile_now(
            "approvalpolicy",
            memo,
            lambda: reconcile(body, patch, memo, retry, drift_check=reason == "resume"),
        )

    @kopf.timer(
        group,
        version,
        PLURAL,
        id="resync",
        interval=settings.resync_seconds,
        initial_delay=settings.first_resync_seconds,
        registry=registry,
    )
    async def resync_policy(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int = 0, **kwargs: Any
    ) -> None:
        """Pending counts, reminder-schedule drift and the published snapshot, periodically."""
        await resync(
            "approvalpolicy",
            body,
            patch,
            memo,
            stopped=kwargs["stopped"],  # kopf gives timers the flag it sets when they must exit
            reconcile=lambda: reconcile(body, patch, memo, retry, drift_check=True),
        )

    @kopf.on.delete(group, version, PLURAL, id="cleanup", registry=registry)
    async def delete_policy(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, **_: Any
    ) -> None:
        """Unpublish the policy and delete its reminder schedule.

        Requests that already pinned the policy keep their snapshot; new ones cannot use it.
        Both are found by the policy's name alone, so an invalid spec never keeps the
        finalizer; it stays (with a condition saying why) only while the ConfigMap or
        Temporal cannot be reached.
        """
        operator = operator_of(memo)
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            assert operator.core is not None, "the startup handler did not run"
            await publish(
                operator.core,
                operator.settings.policy_configmap,
                operator.settings.policy_configmap_namespace,
                key_of(namespace, name),
                None,
            )
            client = (await operator.clients()).default
            log.info("ApprovalPolicy %s/%s: %s", namespace, name,
                     await _delete_reminders(client, namespace, name))  # fmt: skip
        except Exception as exc:
            failure = classify(
                exc, attempt=retry, max_backoff=operator.settings.max_backoff_seconds
            )
            if failure.unexpected:
                log.exception("ApprovalPolicy %s/%s: cleanup failed", namespace, name)
            message = f"cannot clean up yet, so the finalizer stays: {failure.message}"
            write_status(body, patch, Want("Synced", "False", failure.reason, message))
            raise kopf.TemporaryError(
                message, delay=failure.retry_after or operator.settings.max_backoff_seconds
            ) from None
        with contextlib.suppress(KeyError):
            metrics.APPROVALS_PENDING.remove(name)
        await release_finalizer(operator, body, PLURAL)
