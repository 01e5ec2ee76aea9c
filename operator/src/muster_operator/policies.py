"""``ApprovalPolicy`` → what Temporal and the workers need: a published snapshot document
and a reminder schedule. Pure functions, plus the one visibility count for status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client

from muster_api import v1alpha1
from muster_api.approval import PolicySnapshot
from muster_api.scheduling import APPROVAL_REMINDERS
from muster_api.search_attributes import pending_approvals_query
from muster_api.v1alpha1 import REMINDERS_ANNOTATION
from muster_operator.reconcile import SpecError, describe_errors, owner_of, parse_model

SHA_ANNOTATION = "muster.io/sha256"


def parse_policy(body: Mapping[str, Any]) -> v1alpha1.ApprovalPolicy:
    """A resource body as the model (raises SpecError naming every problem)."""
    return parse_model(v1alpha1.ApprovalPolicy, body)


def policy_key(policy: v1alpha1.ApprovalPolicy) -> str:
    """The file name of a policy in the published ConfigMap / folder."""
    return key_of(policy.metadata.namespace, policy.metadata.name)


def key_of(namespace: str, name: str) -> str:
    """The file name of the policy ``namespace/name`` (no valid spec needed)."""
    return f"{namespace}.{name}.yaml"


def reminder_id(namespace: str, name: str) -> str:
    """The Temporal schedule id of a policy's reminders."""
    return f"{namespace}.{name}.reminders"


def reminder_owner(namespace: str, name: str) -> str:
    """The owner marker in the memo of a policy's reminder schedule."""
    return owner_of(namespace, f"{name}-reminders")


def policy_document(policy: v1alpha1.ApprovalPolicy) -> dict[str, Any]:
    """The snapshot document workers load: the spec, where it came from, its hash.

    Reminders of a published policy are sent by its reminder schedule, so the document
    says so (``muster.io/reminders: schedule``) and requests do not also time their own.
    """
    snapshot = PolicySnapshot.of(policy)
    annotations = {SHA_ANNOTATION: snapshot.sha256}
    if policy.spec.reminders is not None:
        annotations[REMINDERS_ANNOTATION] = "schedule"
    return {
        "apiVersion": v1alpha1.API_VERSION,
        "kind": "ApprovalPolicy",
        "metadata": {
            "name": policy.metadata.name,
            "namespace": policy.metadata.namespace,
            "generation": policy.metadata.generation,
            "annotations": annotations,
        },
        "spec": policy.spec.model_dump(mode="json", by_alias=True, exclude_defaults=True),
    }


def reminder_schedule(
    policy: v1alpha1.ApprovalPolicy, task_queue: str, *, force: bool = False
) -> v1alpha1.Schedule | None:
    """The Schedule that reminds a policy's approvers (None when it has no reminders).

    ``force`` builds it anyway (to find and delete one that should no longer exist).
    """
    reminders = policy.spec.reminders
    if reminders is None and not force:
        return None
    name, namespace = policy.metadata.name, policy.metadata.namespace
    try:
        return _reminder_document(policy, task_queue)
    except ValidationError as exc:
        raise SpecError(
            f"its reminder schedule ({reminder_id(namespace, name)}) cannot be made: "
            f"{describe_errors(exc)}"
        ) from None


def _reminder_document(policy: v1alpha1.ApprovalPolicy, task_queue: str) -> v1alpha1.Schedule:
    reminders = policy.spec.reminders
    name, namespace = policy.metadata.name, policy.metadata.namespace
    return v1alpha1.Schedule.model_validate(
        {
            "apiVersion": v1alpha1.API_VERSION,
            "kind": "Schedule",
            "metadata": {"name": f"{name}-reminders", "namespace": namespace},
            "spec": {
                "cron": [reminders.cron if reminders else "0 9 * * *"],
                "timeZone": reminders.time_zone if reminders else "UTC",
                "policy": {"overlap": "Skip"},
                "workflow": {
                    "type": APPROVAL_REMINDERS,
                    "taskQueue": task_queue,
                    "args": [{"policy": name, "namespace": namespace}],
                    "executionTimeout": "1h",
                },
                "temporal": {"scheduleId": reminder_id(namespace, name)},
                "note": f"reminders of ApprovalPolicy {namespace}/{name}",
            },
        }
    )


async def pending_requests(client: Client, policy: v1alpha1.ApprovalPolicy) -> int:
    """How many of the policy's requests wait for a decision."""
    result = await client.count_workflows(pending_approvals_query(policy.metadata.name))
    return result.count
