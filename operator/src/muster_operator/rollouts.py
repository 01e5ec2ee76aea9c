"""Pure functions of worker rollouts: a ``WorkerDeployment`` and what Kubernetes and Temporal
hold go in; the Deployments to create, scale and delete, the replay gate to start, the
routing change to make in Temporal, and the status to show come out.

The model is temporal-worker-controller's rainbow deployment, adapted to Muster: one
Kubernetes Deployment per build of the worker (named after the build id, labelled
``muster.io/build-id``, owned by the ``WorkerDeployment``). A new build becomes current once
its pollers are in Temporal and its replay gate passed (at once, or ramped through steps);
old builds keep their pods while pinned workflows still run on them and are scaled down,
then deleted, a while after they drained; a build that was current before comes back at
once; and a new build that one of Muster's alerts fires for is rolled back.

Nothing here does I/O: :mod:`muster_operator.versions` asks Temporal and Prometheus,
:mod:`muster_operator.workerdeployments` asks Kubernetes and carries the plan out. Verdicts
that must survive the operator (the replay gate's, a rollback's reason) live in Temporal,
in the version's metadata, so status can always be rebuilt from the world.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from muster_api import v1alpha1
from muster_operator.reconcile import Want, bounded
from muster_runtime.versioning import GATE_METADATA_KEY

WORKER_LABEL = "muster.io/worker-deployment"
"""Label of every Deployment (and pod) the operator runs for a WorkerDeployment."""
BUILD_LABEL = "muster.io/build-id"
"""Label naming the build (a hash when the build id is no valid label value)."""
BUILD_ANNOTATION = "muster.io/build-id"
"""The build id itself, on each build's Deployment."""
TEMPLATE_HASH_ANNOTATION = "muster.io/template-hash"
"""Hash of the WorkerDeployment's template the Deployment was made from."""
GATE_LABEL = "muster.io/replay-gate"
"""Label of a replay gate's Job and pod."""
GATE_KEY = GATE_METADATA_KEY
"""Version metadata entry where the gate writes its verdict."""
ROLLBACK_KEY = "muster.io/rolled-back"
"""Version metadata entry where the operator writes why it rolled a build back."""
IDENTITY = "muster-operator"
"""The identity the operator's routing changes carry in Temporal."""

VersionState = Literal[
    "Starting", "Inactive", "Ramping", "Current", "Draining", "Drained", "Unknown"
]
TemporalStatus = Literal["Inactive", "Current", "Ramping", "Draining", "Drained"]

_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_DEPLOYMENT_NAME = 52
"""Longest Deployment name: its ReplicaSets add 11 characters, their pods 6 more, and a
pod's hostname has at most 63."""


def _digest(text: str, length: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def canonical(value: Any) -> str:
    """``value`` as canonical JSON (sorted keys, no spaces): what is hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def template_hash(template: Mapping[str, Any]) -> str:
    """A hash of a pod template as the spec holds it."""
    return _digest(canonical(template))


def image_tag(image: str) -> str:
    """What names an image's build: its tag, or the start of its digest, or its name."""
    reference, _, digest = image.partition("@")
    if digest:
        return digest.split(":")[-1][:12]
    name = reference.rsplit("/", 1)[-1]
    return name.split(":", 1)[1] if ":" in name else name


def build_id(resource: v1alpha1.WorkerDeployment) -> str:
    """The build the spec's template makes: ``spec.buildId``, or the worker image's tag and
    a hash of the whole template, so that every change to the pods is a new build."""
    if resource.spec.build_id:
        return resource.spec.build_id
    suffix = template_hash(template_json(resource))
    tag = re.sub(r"[^A-Za-z0-9._-]", "-", image_tag(resource.spec.worker_container().image))
    tag = tag.strip("._-")[: 63 - len(suffix) - 1].rstrip("._-")
    return f"{tag}-{suffix}" if tag else suffix


def template_json(resource: v1alpha1.WorkerDeployment) -> dict[str, Any]:
    """The spec's pod template as a JSON document."""
    return resource.spec.template.model_dump(mode="json", by_alias=True, exclude_none=True)


def label_value(build: str) -> str:
    """The build as a label value (a hash of it when it is not a valid one)."""
    return build if _LABEL_VALUE.match(build) else f"h-{_digest(build, 16)}"


def deployment_name(resource: v1alpha1.WorkerDeployment, build: str) -> str:
    """The Kubernetes Deployment of one build: ``<name>-<build id>`` where that is a valid,
    short enough name, else the name and a hash of the build."""
    name = resource.metadata.name
    readable = f"{name}-{build}".lower()
    if len(readable) <= MAX_DEPLOYMENT_NAME and _DNS_LABEL.match(readable):
        return readable
    base = re.sub(r"[^a-z0-9-]", "-", name.lower())[: MAX_DEPLOYMENT_NAME - 11].strip("-")
    return f"{base}-{_digest(build)}"


def gate_job_name(resource: v1alpha1.WorkerDeployment, build: str) -> str:
    """The replay gate's Job of one build."""
    base = re.sub(r"[^a-z0-9-]", "-", resource.metadata.name.lower())[:40].strip("-")
    return f"{base}-gate-{_digest(build)}"


# -- what the operator runs ------------------------------------------------------------------


def _set_env(env: list[dict[str, Any]], name: str, value: str) -> list[dict[str, Any]]:
    kept = [item for item in env if item.get("name") != name]
    return [*kept, {"name": name, "value": value}]


def worker_template(resource: v1alpha1.WorkerDeployment, build: str) -> dict[str, Any]:
    """The pod template of one build: the spec's, with the build's labels and the worker's
    version settings (build id, deployment name, promotion left to the operator)."""
    template = copy.deepcopy(template_json(resource))
    metadata = template.setdefault("metadata", {})
    labels = dict(metadata.get("labels") or {})
    labels.update({WORKER_LABEL: resource.metadata.name, BUILD_LABEL: label_value(build)})
    metadata["labels"] = labels
    worker = resource.spec.worker_container().name
    prefix = resource.spec.settings_prefix
    for container in template["spec"]["containers"]:
        if container["name"] != worker:
            continue
        env = list(container.get("env") or [])
        env = _set_env(env, f"{prefix}WORKER__BUILD_ID", build)
        env = _set_env(env, f"{prefix}WORKER__DEPLOYMENT_NAME", resource.deployment_name)
        env = _set_env(env, f"{prefix}WORKER__PROMOTE", "external")
        container["env"] = env
    return template


def owner_reference(kind: str, api_version: str, name: str, uid: str) -> dict[str, Any]:
    """A controller owner reference (garbage collection follows it)."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def deployment_manifest(
    resource: v1alpha1.WorkerDeployment, build: str, owner_uid: str, replicas: int
) -> dict[str, Any]:
    """The Kubernetes Deployment of one build, owned by the WorkerDeployment."""
    template = worker_template(resource, build)
    selector = {WORKER_LABEL: resource.metadata.name, BUILD_LABEL: label_value(build)}
    labels = {**(resource.spec.template.metadata.get("labels") or {}), **selector}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(resource, build),
            "namespace": resource.metadata.namespace,
            "labels": labels,
            "annotations": {
                BUILD_ANNOTATION: build,
                TEMPLATE_HASH_ANNOTATION: template_hash(template_json(resource)),
            },
            "ownerReferences": [
                owner_reference(
                    "WorkerDeployment",
                    v1alpha1.API_VERSION,
                    resource.metadata.name,
                    owner_uid,
                )
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": template,
        },
    }


GATE_COMPONENT_SUFFIX = "-replay-gate"


def gate_job_manifest(
    resource: v1alpha1.WorkerDeployment,
    build: str,
    owner: tuple[str, str],
    *,
    sample_per_type: int,
) -> dict[str, Any]:
    """The Job that runs a build's replay gate in the build's own image: ``python -m
    muster_runtime.replay`` replays running auto-upgrade workflows of the Worker Deployment
    on the build's code and writes its verdict into the version's metadata.

    Owned by the build's Deployment, so it goes when the build goes. Its pod is the
    worker's (image, environment, volumes, security) minus probes and ports, and its
    ``app.kubernetes.io/component`` label gets a suffix, so the worker's disruption budget
    and network policies do not count it as a worker.
    """
    template = worker_template(resource, build)
    pod_metadata = template.get("metadata") or {}
    labels = {
        key: value
        for key, value in (pod_metadata.get("labels") or {}).items()
        if key not in (BUILD_LABEL, "muster.io/metrics")
    }
    if "app.kubernetes.io/component" in labels:
        labels["app.kubernetes.io/component"] += GATE_COMPONENT_SUFFIX
    labels[GATE_LABEL] = "true"
    worker = resource.spec.worker_container().name
    spec = template["spec"]
    container = next(c for c in spec["containers"] if c["name"] == worker)
    for probe in ("livenessProbe", "readinessProbe", "startupProbe", "ports", "lifecycle"):
        container.pop(probe, None)
    gate = resource.spec.rollout.replay_gate
    args = ["-m", "muster_runtime.replay"]
    for workflow in gate.workflows:
        args += ["--workflows", workflow]
    args += [
        "--running-in",
        resource.deployment_name,
        "--sample",
        str(sample_per_type),
        "--verdict-for",
        f"{resource.deployment_name}:{build}",
        "--timeout",
        str(int(gate.timeout.total_seconds())),
    ]
    container["command"] = ["python"]
    container["args"] = args
    spec["containers"] = [container]
    spec.pop("initContainers", None)
    spec["restartPolicy"] = "Never"
    name, uid = owner
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": gate_job_name(resource, build),
            "namespace": resource.metadata.namespace,
            "labels": {WORKER_LABEL: resource.metadata.name, GATE_LABEL: "true"},
            "annotations": {BUILD_ANNOTATION: build},
            "ownerReferences": [owner_reference("Deployment", "apps/v1", name, uid)],
        },
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": int(gate.timeout.total_seconds()),
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": dict(pod_metadata.get("annotations") or {}),
                },
                "spec": spec,
            },
        },
    }


# -- what the operator observed --------------------------------------------------------------


@dataclass(frozen=True)
class Pods:
    """A build's Deployment, as Kubernetes holds it."""

    name: str
    build_id: str
    replicas: int
    ready: int
    template_hash: str | None
    created: datetime | None
    uid: str


@dataclass(frozen=True)
class GateVerdict:
    """What a build's replay gate wrote into its version's metadata."""

    passed: bool
    message: str
    replayed: int = 0


@dataclass(frozen=True)
class Version:
    """A build as Temporal knows it (a version of the Worker Deployment)."""

    build_id: str
    status: TemporalStatus
    current_since: datetime | None = None
    last_current: datetime | None = None
    drained_since: datetime | None = None
    gate: GateVerdict | None = None
    rolled_back: str | None = None


@dataclass(frozen=True)
class Routing:
    """The Worker Deployment's routing in Temporal."""

    current: str | None = None
    ramping: str | None = None
    percentage: float = 0.0
    ramp_changed: datetime | None = None


@dataclass(frozen=True)
class Workflows:
    """Open workflows whose last task ran on a build, and the pinned ones among them."""

    running: int
    pinned: int


@dataclass(frozen=True)
class GateJob:
    """A replay gate's Job."""

    name: str
    created: datetime | None
    failed: str | None = None
    """Why the Job failed (its pods could not run the gate), or None."""


@dataclass(frozen=True)
class Alert:
    """One of Muster's alerts firing for a build."""

    name: str
    build_id: str
    summary: str


@dataclass(frozen=True)
class Observed:
    """Everything the planner needs to know about the world."""

    now: datetime
    pods: Mapping[str, Pods]
    versions: Mapping[str, Version] | None
    """Temporal's versions by build id; None when Temporal could not be asked."""
    routing: Routing = field(default_factory=Routing)
    pollers: Mapping[str, int] = field(default_factory=dict)
    """Pollers of each build on every one of its task queues (the fewest)."""
    workflows: Mapping[str, Workflows] = field(default_factory=dict)
    gate_jobs: Mapping[str, GateJob] = field(default_factory=dict)
    alerts: Sequence[Alert] | None = None
    """Alerts firing for this Worker Deployment; None when they are not watched."""
    alerts_note: Want = field(
        default_factory=lambda: Want("AlertsWatched", "False", "NoPrometheus")
    )
    ready_reason: str | None = None
    """The Ready condition's reason as status has it now (Events once per transition)."""


# -- the plan --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoutingChange:
    """One change to the Worker Deployment's routing in Temporal."""

    action: Literal["set-current", "set-ramping", "unset-ramping"]
    build_id: str | None
    percentage: float = 0.0
    reason: str = ""
    allow_no_pollers: bool = False


@dataclass
class Plan:
    """What to do now, and what status says afterwards."""

    target: str
    create: bool = False
    update: bool = False
    scale: dict[str, int] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    gate_job: bool = False
    routing: RoutingChange | None = None
    rollback: tuple[str, str] | None = None
    """(build, reason) to record in the build's version metadata."""
    events: list[tuple[str, str, str]] = field(default_factory=list)
    conditions: list[Want] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    summary: str = ""


def _ramp_step(steps: Sequence[v1alpha1.RolloutStep], percentage: float) -> int:
    """The step a ramp of ``percentage`` is at: the last whose percentage it reached."""
    index = 0
    for position, step in enumerate(steps):
        if step.ramp_percentage <= percentage:
            index = position
    return index


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _previous(versions: Mapping[str, Version], pods: Mapping[str, Pods], build: str) -> str | None:
    """The build that was current before ``build``: the other one that was current last,
    among those whose pods still exist."""
    found = [
        v
        for v in versions.values()
        if v.build_id != build and v.last_current and v.build_id in pods
    ]
    found.sort(key=lambda v: v.last_current or datetime.min)
    return found[-1].build_id if found else None


class _Planner:
    """One reconcile's reasoning (a class only to share its inputs)."""

    def __init__(
        self, resource: v1alpha1.WorkerDeployment, observed: Observed, template_digest: str
    ) -> None:
        self.resource = resource
        self.spec = resource.spec
        self.seen = observed
        self.now = observed.now
        self.target = build_id(resource)
        self.digest = template_digest
        self.plan = Plan(target=self.target)
        self.versions = observed.versions
        self.routing = observed.routing

    # -- routing --------------------------------------------------------------------------

    def run(self) -> Plan:
        ready, progressing = self._route()
        self._pods()
        rolled = self._rolled_back_condition()
        self.plan.conditions = [ready, progressing, rolled, self.seen.alerts_note]
        self._status()
        return self.plan

    def _version(self, build: str) -> Version | None:
        return (self.versions or {}).get(build)

    def _registered(self, build: str) -> bool:
        return self._version(build) is not None and self.seen.pollers.get(build, 0) > 0

    def _event_once(self, reason: str, kind: str, message: str) -> None:
        if self.seen.ready_reason != reason:
            self.plan.events.append((kind, reason, message))

    def _route(self) -> tuple[Want, Want]:
        target, routing = self.target, self.routing
        version = self._version(target)
        if target not in self.seen.pods and not (version and version.rolled_back):
            self.plan.create = True
        elif (
            target in self.seen.pods
            and self.spec.build_id
            and self.seen.pods[target].template_hash != self.digest
        ):
            # A build id given in the spec: a changed template replaces that build's pods.
            self.plan.update = True
        if self.versions is None:
            return self._waiting("TemporalUnavailable", "Temporal could not be asked")
        if version and version.rolled_back:
            message = (
                f"build {target} was rolled back: {version.rolled_back}; it does not return by "
                "itself: deploy a new build (any change to the template makes one), or point "
                "back to the current one"
            )
            if routing.ramping == target:
                self._change("unset-ramping", None, reason=f"{target} was rolled back")
            return Want("Ready", "False", "RolledBack", message), Want(
                "Progressing", "False", "RolledBack", message
            )
        rollback = self._auto_rollback()
        if rollback is not None:
            return rollback
        if routing.current == target:
            if routing.ramping:
                self._change(
                    "unset-ramping",
                    None,
                    reason=f"{routing.ramping} ramped although {target} is the spec's build",
                )
            done = f"build {target} is current"
            return Want("Ready", "True", "RolloutComplete", done), Want(
                "Progressing", "False", "RolloutComplete", done
            )
        if routing.ramping and routing.ramping != target:
            self._change(
                "unset-ramping",
                None,
                reason=f"{routing.ramping} is no longer the spec's build ({target} is)",
            )
            return self._waiting("Superseded", f"stopped ramping {routing.ramping}")
        self._start_gate_early(version)
        if not self._registered(target):
            if target not in self.seen.pods:
                return self._waiting("WaitingForPods", f"creating the Deployment of build {target}")
            return self._waiting(
                "WaitingForPollers",
                f"waiting for the pods of build {target} to poll Temporal as "
                f"{self.resource.deployment_name}:{target}",
            )
        if self.spec.rollout.strategy == "Manual":
            message = (
                f"build {target} polls; strategy Manual: make it current with `temporal worker "
                f"deployment set-current-version --deployment-name "
                f"{self.resource.deployment_name} --build-id {target}`"
            )
            return Want("Ready", "False", "WaitingForPromotion", message), Want(
                "Progressing", "False", "WaitingForPromotion", message
            )
        assert version is not None
        if version.last_current is not None:
            self._change("set-current", target, reason=f"{target} was current before: restored")
            self.plan.events.append(
                ("Normal", "Restored", f"build {target} was current before: current again at once")
            )
            return self._waiting("Restoring", f"making build {target} current again")
        if routing.current is None:
            self._change("set-current", target, reason="the first build of the deployment")
            return self._waiting("Promoting", f"making build {target} current (the first one)")
        gate = self._gate(version)
        if gate is not None:
            return gate
        if self.spec.rollout.strategy == "AllAtOnce":
            self._change("set-current", target, reason="its pollers are up and its gate passed")
            self.plan.events.append(
                (
                    "Normal",
                    "Promoted",
                    f"build {target} is current: its pollers are up and its replay gate "
                    f"passed; {routing.current} drains",
                )
            )
            return self._waiting("Promoting", f"making build {target} current")
        return self._ramp()

    def _waiting(self, reason: str, message: str) -> tuple[Want, Want]:
        return Want("Ready", "False", reason, message), Want("Progressing", "True", reason, message)

    def _change(self, action: Any, build: str | None, **kwargs: Any) -> None:
        if self.plan.routing is None:
            self.plan.routing = RoutingChange(action, build, **kwargs)

    def _start_gate_early(self, version: Version | None) -> None:
        """Start the gate with the build's pods rather than after them: it needs only the
        image, and it waits for the version to exist before it writes its verdict."""
        if (
            self.spec.rollout.replay_gate.workflows
            and self.routing.current is not None
            and (version is None or (version.gate is None and version.last_current is None))
            and self.target not in self.seen.gate_jobs
        ):
            self.plan.gate_job = True

    def _gate(self, version: Version) -> tuple[Want, Want] | None:
        """None when the gate passed (or there is none); else the conditions while it runs
        or after it failed."""
        target = self.target
        gate = self.spec.rollout.replay_gate
        if not gate.workflows:
            return None
        verdict = version.gate
        if verdict is not None and verdict.passed:
            return None
        if verdict is not None:
            message = (
                f"build {target} does not replay workflows that would move to it, so it never "
                f"gets work: {verdict.message}"
            )
            self._event_once("ReplayGateFailed", "Warning", message)
            return Want("Ready", "False", "ReplayGateFailed", message), Want(
                "Progressing", "False", "ReplayGateFailed", message
            )
        job = self.seen.gate_jobs.get(target)
        if job is None:
            self.plan.gate_job = True
            return self._waiting("ReplayGateRunning", f"starting the replay gate of build {target}")
        if job.failed:
            message = (
                f"the replay gate of build {target} could not run: {job.failed} (kubectl logs "
                f"job/{job.name}; delete the Job to run it again)"
            )
            self._event_once("ReplayGateError", "Warning", message)
            return Want("Ready", "False", "ReplayGateError", message), Want(
                "Progressing", "False", "ReplayGateError", message
            )
        if job.created and self.now - job.created > gate.timeout + timedelta(seconds=30):
            message = (
                f"the replay gate of build {target} gave no verdict within "
                f"{v1alpha1.format_duration(gate.timeout)} (kubectl logs job/{job.name}; "
                "delete the Job to run it again)"
            )
            self._event_once("ReplayGateTimedOut", "Warning", message)
            return Want("Ready", "False", "ReplayGateTimedOut", message), Want(
                "Progressing", "False", "ReplayGateTimedOut", message
            )
        return self._waiting(
            "ReplayGateRunning",
            f"replaying running workflows on build {target} (Job {job.name})",
        )

    def _ramp(self) -> tuple[Want, Want]:
        target, routing = self.target, self.routing
        steps = self.spec.rollout.steps
        if routing.ramping != target:
            first = steps[0].ramp_percentage
            self._change("set-ramping", target, percentage=first, reason="step 1")
            self.plan.events.append(
                ("Normal", "Ramping", f"build {target} ramps: {first}% of new workflows")
            )
            return self._waiting("Ramping", f"ramping build {target} to {first}%")
        index = _ramp_step(steps, routing.percentage)
        step = steps[index]
        if routing.percentage != step.ramp_percentage:
            self._change("set-ramping", target, percentage=step.ramp_percentage, reason="reset")
            return self._waiting("Ramping", f"ramping build {target} to {step.ramp_percentage}%")
        since = routing.ramp_changed or self.now
        due = since + step.pause
        if self.now < due:
            return self._waiting(
                "Ramping",
                f"build {target} gets {step.ramp_percentage}% of new workflows (step "
                f"{index + 1} of {len(steps)}) until {_when(due)}",
            )
        if index + 1 < len(steps):
            following = steps[index + 1].ramp_percentage
            self._change("set-ramping", target, percentage=following, reason=f"step {index + 2}")
            self.plan.events.append(
                ("Normal", "Ramping", f"build {target} ramps: {following}% of new workflows")
            )
            return self._waiting("Ramping", f"ramping build {target} to {following}%")
        self._change("set-current", target, reason="its last ramp step passed")
        self.plan.events.append(
            (
                "Normal",
                "Promoted",
                f"build {target} is current after its last ramp step; {routing.current} drains",
            )
        )
        return self._waiting("Promoting", f"making build {target} current")

    # -- automatic rollback ---------------------------------------------------------------

    def _auto_rollback(self) -> tuple[Want, Want] | None:
        """Roll the spec's build back when an alert it names fires for it while it ramps or
        within ``window`` of becoming current."""
        policy = self.spec.rollout.auto_rollback
        if (
            not policy.enabled
            or self.spec.rollout.strategy == "Manual"
            or self.seen.alerts is None
            or self.versions is None
        ):
            return None
        target, routing = self.target, self.routing
        version = self._version(target)
        watched = routing.ramping == target or (
            routing.current == target
            and version is not None
            and version.current_since is not None
            and self.now - version.current_since <= policy.window
        )
        if not watched:
            return None
        firing = [a for a in self.seen.alerts if a.build_id == target and a.name in policy.alerts]
        if not firing:
            return None
        alert = sorted(firing, key=lambda a: a.name)[0]
        why = f"{alert.name} fired for it" + (f": {alert.summary}" if alert.summary else "")
        if routing.ramping == target:
            self._change("unset-ramping", None, reason=f"rolled back: {alert.name}")
            back_to = routing.current
        else:
            back_to = _previous(self.versions, self.seen.pods, target)
            if back_to is None:
                message = f"{why}; there is no earlier build with pods to roll back to"
                self._event_once("RollbackImpossible", "Warning", f"build {target}: {message}")
                return Want("Ready", "False", "RollbackImpossible", message), Want(
                    "Progressing", "False", "RollbackImpossible", message
                )
            self._change(
                "set-current",
                back_to,
                reason=f"rolled back from {target}: {alert.name}",
                allow_no_pollers=True,
            )
            self.plan.scale[deployment_name(self.resource, back_to)] = self.spec.replicas
        self.plan.rollback = (target, bounded(why, 500))
        message = f"build {target} rolled back to {back_to or 'no ramp'}: {why}"
        self.plan.events.append(("Warning", "RolledBack", message))
        return Want("Ready", "False", "RolledBack", message), Want(
            "Progressing", "False", "RolledBack", message
        )

    def _rolled_back_condition(self) -> Want:
        if self.plan.rollback is not None:
            build, why = self.plan.rollback
            return Want("RolledBack", "True", _alert_reason(why), f"build {build}: {why}")
        version = self._version(self.target)
        if version is not None and version.rolled_back:
            return Want(
                "RolledBack",
                "True",
                _alert_reason(version.rolled_back),
                f"build {self.target}: {version.rolled_back}",
            )
        return Want("RolledBack", "False", "NotRolledBack", "")

    # -- pods -----------------------------------------------------------------------------

    def _routed(self) -> set[str]:
        routed = {b for b in (self.routing.current, self.routing.ramping) if b}
        change = self.plan.routing
        if change is not None and change.build_id:
            routed.add(change.build_id)
        if change is not None and change.action == "unset-ramping" and self.routing.ramping:
            routed.discard(self.routing.ramping)
            # Its pinned workflows keep it as long as it drains (the rules below).
        return routed

    def _pods(self) -> None:
        """Scale the builds that get work to spec.replicas; old ones keep their pods while
        they drain, then go to zero after scaledownDelay and away after deleteDelay."""
        sunset = self.spec.sunset
        routed = self._routed()
        target_version = self._version(self.target)
        target_live = not (target_version and target_version.rolled_back)
        for build, pods in self.seen.pods.items():
            if build in routed or (build == self.target and target_live):
                if pods.replicas != self.spec.replicas:
                    self.plan.scale.setdefault(pods.name, self.spec.replicas)
                continue
            if self.versions is None:
                continue  # without Temporal's word nothing is scaled down
            version = self.versions.get(build)
            counts = self.seen.workflows.get(build)
            if version is None:
                if self.seen.pollers.get(build, 0) == 0:
                    # Never polled: no workflow can have started on it.
                    self._delete(pods, f"build {build} was replaced before its pods polled")
                continue
            if counts is None or counts.pinned > 0:
                continue  # pinned workflows still run on it (or they could not be counted)
            if version.status == "Inactive":
                self._delete(pods, f"build {build} never got work and is not the spec's build")
            elif version.status == "Drained":
                since = version.drained_since or self.now
                if self.now - since >= sunset.delete_delay:
                    self._delete(
                        pods,
                        f"build {build} drained at {_when(since)}; deleteDelay "
                        f"{v1alpha1.format_duration(sunset.delete_delay)} passed",
                    )
                elif self.now - since >= sunset.scaledown_delay and pods.replicas > 0:
                    self.plan.scale[pods.name] = 0
                    self.plan.events.append(
                        (
                            "Normal",
                            "ScaledDown",
                            f"build {build} drained at {_when(since)} (no pinned workflow runs "
                            f"on it): its pods are scaled to zero",
                        )
                    )

    def _delete(self, pods: Pods, why: str) -> None:
        self.plan.delete.append(pods.name)
        self.plan.events.append(("Normal", "Deleted", f"deleted Deployment {pods.name}: {why}"))

    # -- status ---------------------------------------------------------------------------

    def _state(self, build: str) -> VersionState:
        if self.versions is None:
            return "Unknown"
        version = self.versions.get(build)
        if version is None:
            return "Starting"
        return version.status

    def _status(self) -> None:
        builds = list(self.seen.pods)
        for extra in (self.routing.current, self.routing.ramping):
            if extra and extra not in builds:
                builds.append(extra)

        def created(build: str) -> datetime:
            pods = self.seen.pods.get(build)
            return (
                pods.created
                if pods and pods.created
                else datetime.min.replace(tzinfo=self.now.tzinfo)
            )

        builds.sort(key=created, reverse=True)
        summary = []
        for build in builds:
            pods = self.seen.pods.get(build)
            version = self._version(build)
            counts = self.seen.workflows.get(build)
            entry = v1alpha1.WorkerVersionStatus(
                build_id=build,
                state=self._state(build),
                deployment=pods.name if pods else None,
                replicas=self.plan.scale.get(pods.name, pods.replicas) if pods else None,
                ready_replicas=pods.ready if pods else None,
                pollers=self.seen.pollers.get(build),
                running_workflows=counts.running if counts else None,
                pinned_workflows=counts.pinned if counts else None,
                ramp_percentage=self.routing.percentage if build == self.routing.ramping else None,
                gate=self._gate_status(build, version),
                rolled_back=self._rolled_back(build, version),
                created_at=pods.created if pods else None,
                current_since=version.current_since
                if version and version.status == "Current"
                else None,
                drained_since=version.drained_since if version else None,
            )
            self.plan.versions.append(
                entry.model_dump(mode="json", by_alias=True, exclude_none=True)
            )
            running = f" {counts.running} running" if counts else ""
            summary.append(f"{build}={entry.state}{running}")
        self.plan.summary = bounded(", ".join(summary), 400)

    def _rolled_back(self, build: str, version: Version | None) -> str | None:
        """Why the build was rolled back: by this reconcile, or as its metadata says."""
        if self.plan.rollback is not None and self.plan.rollback[0] == build:
            return self.plan.rollback[1]
        return version.rolled_back if version else None

    def _gate_status(self, build: str, version: Version | None) -> v1alpha1.ReplayGateStatus | None:
        gate = self.spec.rollout.replay_gate
        job = self.seen.gate_jobs.get(build)
        verdict = version.gate if version else None
        if verdict is not None:
            return v1alpha1.ReplayGateStatus(
                state="Passed" if verdict.passed else "Failed",
                message=bounded(verdict.message, 1000),
                replayed=verdict.replayed,
                job=job.name if job else None,
            )
        if job is not None:
            state: Literal["Running", "Failed"] = "Failed" if job.failed else "Running"
            return v1alpha1.ReplayGateStatus(state=state, message=job.failed, job=job.name)
        if build != self.target or not gate.workflows:
            return None
        if self.routing.current in (None, build) or (version and version.last_current):
            return v1alpha1.ReplayGateStatus(
                state="Skipped", message="no other build ran workflows that would move to it"
            )
        return v1alpha1.ReplayGateStatus(state="Pending")


def _alert_reason(why: str) -> str:
    """The CamelCase word a rollback's condition carries: the alert's name."""
    word = why.split(" ", 1)[0]
    return word if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", word) else "AlertFiring"


def plan(resource: v1alpha1.WorkerDeployment, observed: Observed) -> Plan:
    """What to do for ``resource`` given what the operator observed."""
    return _Planner(resource, observed, template_hash(template_json(resource))).run()


def routed(routing: Routing, change: RoutingChange | None) -> tuple[str | None, str | None, float]:
    """Current build, ramping build and ramp percentage once ``change`` is made: status says
    what the reconcile did, not what it found (a rollback shows no ramping build)."""
    current, ramping, percentage = routing.current, routing.ramping, routing.percentage
    if change is None:
        return current, ramping, percentage
    if change.action == "set-current":
        current = change.build_id
        if ramping == current:
            ramping, percentage = None, 0.0
    elif change.action == "set-ramping":
        ramping, percentage = change.build_id, change.percentage
    else:
        ramping, percentage = None, 0.0
    return current, ramping, percentage


def current_selector(resource: v1alpha1.WorkerDeployment, build: str | None) -> str | None:
    """The label selector of a build's pods (the scale subresource's), as a string."""
    if build is None:
        return None
    return f"{WORKER_LABEL}={resource.metadata.name},{BUILD_LABEL}={label_value(build)}"
