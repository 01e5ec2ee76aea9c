"""What the rollout tests share: builds of the workers whose code differs the way a real
change would (a copy of the package with one edit, put first on PYTHONPATH by the test's
node, or baked into an image by the cluster tier), WorkerDeployment bodies, approval
requests, and reading which build completed each workflow task of a workflow."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from muster_api.approval import ApprovalRequest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {
    "muster_approval": REPO / "services" / "approval" / "src" / "muster_approval",
    "muster_fulfillment": REPO / "services" / "fulfillment" / "src" / "muster_fulfillment",
}

# The changes the proof deploys. Each replaces one piece of a workflow's code; every piece
# must be found exactly once, so a refactoring of the workflow shows here, not as a test
# that proves nothing.
APPROVAL_START = "        patched = workflow.patched(PEOPLE_PATCH)\n"
APPROVAL_PATCHED = (
    "        if workflow.patched('rollout-cool-off'):  # v2: a new first command, patched\n"
    "            await workflow.sleep(timedelta(milliseconds=100))\n" + APPROVAL_START
)
APPROVAL_UNPATCHED = (
    "        await workflow.sleep(timedelta(milliseconds=100))  # v3: the same, unpatched\n"
    + APPROVAL_START
)
FULFILLMENT_START = "    async def run(self, request: FulfillmentInput) -> OrderResult:\n"
FULFILLMENT_CHANGED = (
    FULFILLMENT_START
    + "        await workflow.sleep(timedelta(milliseconds=100))  # v2: unpatched (pinned)\n"
)


def variant(root: Path, package: str, edits: Sequence[tuple[str, str]], file: str) -> Path:
    """A copy of ``package`` under ``root`` with ``edits`` applied to ``file``; ``root`` is
    what goes first on PYTHONPATH (or into an image's site-packages)."""
    target = root / package
    shutil.copytree(PACKAGES[package], target, ignore=shutil.ignore_patterns("__pycache__"))
    path = target / file
    text = path.read_text()
    for old, new in edits:
        assert text.count(old) == 1, f"{package}/{file}: {old!r} is not there exactly once"
        text = text.replace(old, new)
    path.write_text(text)
    return root


def approval_v2(root: Path) -> Path:
    return variant(root, "muster_approval", [(APPROVAL_START, APPROVAL_PATCHED)], "workflows.py")


def approval_v3(root: Path) -> Path:
    return variant(root, "muster_approval", [(APPROVAL_START, APPROVAL_UNPATCHED)], "workflows.py")


def fulfillment_v2(root: Path) -> Path:
    return variant(
        root, "muster_fulfillment", [(FULFILLMENT_START, FULFILLMENT_CHANGED)], "workflows.py"
    )


POLICY = """\
apiVersion: muster.io/v1alpha1
kind: ApprovalPolicy
metadata: {name: rollout}
spec:
  appliesTo: {kinds: [purchase, order]}
  approvers: {users: [alice]}
  requiredApprovals: 1
  timeout: 7d
  notifications: {email: null}
"""
DIRECTORY = """\
users:
  alice: {email: alice@example.com, groups: [finance]}
  dave: {email: dave@example.com, groups: [engineering]}
"""


def approval_files(root: Path) -> dict[str, str]:
    """The approval worker's policy folder and directory (no e-mail: no SMTP needed)."""
    policies = root / "policies"
    policies.mkdir(parents=True, exist_ok=True)
    (policies / "rollout.yaml").write_text(POLICY)
    directory = root / "directory.yaml"
    directory.write_text(DIRECTORY)
    return {
        "MUSTER_APPROVAL_POLICIES_DIR": str(policies),
        "MUSTER_APPROVAL_DIRECTORY_FILE": str(directory),
        "MUSTER_APPROVAL_SECRETS_DIR": str(root / "secrets"),
        "MUSTER_APPROVAL_PUBLIC_URL": "http://approvals.test/ui",
    }


def env_list(env: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def worker_deployment(
    name: str,
    image: str,
    *,
    prefix: str,
    env: dict[str, str],
    workflows: Sequence[str],
    container: str = "worker",
    **spec: Any,
) -> dict[str, Any]:
    """A WorkerDeployment spec of one worker container."""
    body: dict[str, Any] = {
        "settingsPrefix": prefix,
        "replicas": 1,
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/component": name}},
            "spec": {"containers": [{"name": container, "image": image, "env": env_list(env)}]},
        },
        "rollout": {"replayGate": {"workflows": list(workflows), "samplePerType": 50}},
        "sunset": {"scaledownDelay": "2s", "deleteDelay": "4s"},
    }
    body.update(spec)
    return body


def approval_request(*, kind: str = "purchase") -> ApprovalRequest:
    return ApprovalRequest(
        request_id=f"r-{uuid.uuid4().hex[:10]}",
        kind=kind,
        requester="dave",
        title="A rollout proof",
        policy="rollout",
    )


async def task_builds(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The build that completed each workflow task of a workflow, in order (from the
    ``deployment_version`` each WorkflowTaskCompleted event records)."""
    builds = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            version = event.workflow_task_completed_event_attributes.deployment_version
            builds.append(version.build_id or "unversioned")
    return builds


async def non_determinism_failures(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """Messages of the workflow's task failures caused by non-determinism."""
    found = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            failure = event.workflow_task_failed_event_attributes.failure
            if "nondetermin" in failure.message.lower():
                found.append(failure.message)
    return found


def client_handle(client: Client, workflow_id: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(workflow_id)
