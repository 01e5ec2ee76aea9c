"""kopf handlers of ``WorkerDeployment``: thin I/O around :mod:`muster_operator.rollouts` (what
to do) and :mod:`muster_operator.versions` (Temporal and Prometheus).

One idempotent reconcile serves create, update and resume, and a timer repeats it every
``MUSTER_OPERATOR_ROLLOUT__INTERVAL_SECONDS``: a rollout moves on things that change by
themselves (pods start polling, a gate writes its verdict, a ramp step's pause ends, pinned
workflows finish, an alert fires). Each reconcile reads the build's Deployments from
Kubernetes and the deployment's versions from Temporal, plans, and carries the plan out in
a safe order: a rollback's reason is recorded before routing changes, so a build the
operator rolled back is never promoted again, even after a crash in between.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import kopf
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from muster_api import v1alpha1
from muster_operator.context import (
    Operator,
    check_size,
    condition,
    event,
    fail,
    now,
    operator_of,
    reconcile_now,
    resync,
)
from muster_operator.reconcile import Want, classify, merge_conditions, parse_model
from muster_operator.rollouts import (
    BUILD_ANNOTATION,
    TEMPLATE_HASH_ANNOTATION,
    WORKER_LABEL,
    GateJob,
    Observed,
    Plan,
    Pods,
    Workflows,
    build_id,
    current_selector,
    deployment_manifest,
    deployment_name,
    gate_job_manifest,
    gate_job_name,
    plan,
    routed,
    template_hash,
    template_json,
    worker_template,
)
from muster_operator.settings import OperatorSettings
from muster_operator.versions import (
    DeploymentView,
    RoutingConflict,
    change_routing,
    count_workflows,
    describe_deployment,
    firing_alerts,
    record_rollback,
)

log = logging.getLogger(__name__)

PLURAL = "workerdeployments"
CONTROLLER = "workerdeployment"
T = TypeVar("T")


def parse(body: Mapping[str, Any]) -> v1alpha1.WorkerDeployment:
    """A resource body as the model (raises SpecError with every problem named)."""
    return parse_model(v1alpha1.WorkerDeployment, body)


async def _call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A blocking Kubernetes client call, off the event loop."""
    return await asyncio.to_thread(functools.partial(function, *args, **kwargs))


def _meta(item: Any) -> k8s.V1ObjectMeta:
    metadata = item.metadata
    assert isinstance(metadata, k8s.V1ObjectMeta)
    return metadata


def _apis(operator: Operator) -> tuple[k8s.AppsV1Api, k8s.BatchV1Api]:
    apps, batch = operator.apps, operator.batch
    assert apps is not None, "the startup handler did not run"
    assert batch is not None, "the startup handler did not run"
    return apps, batch


def _owned(item: Any, uid: str) -> bool:
    refs = item.metadata.owner_references or []
    return any(ref.uid == uid and ref.controller for ref in refs)


async def observe_pods(
    apps: k8s.AppsV1Api, resource: v1alpha1.WorkerDeployment, uid: str
) -> dict[str, Pods]:
    """The builds' Deployments this WorkerDeployment owns (never anyone else's)."""
    listed = await _call(
        apps.list_namespaced_deployment,
        resource.metadata.namespace,
        label_selector=f"{WORKER_LABEL}={resource.metadata.name}",
    )
    found: dict[str, Pods] = {}
    for item in listed.items:
        annotations = _meta(item).annotations or {}
        build = annotations.get(BUILD_ANNOTATION)
        if not build or not _owned(item, uid):
            continue
        found[build] = Pods(
            name=str(_meta(item).name),
            build_id=build,
            replicas=item.spec.replicas if item.spec.replicas is not None else 1,
            ready=(item.status.ready_replicas or 0) if item.status else 0,
            template_hash=annotations.get(TEMPLATE_HASH_ANNOTATION),
            created=_meta(item).creation_timestamp,
            uid=str(_meta(item).uid),
        )
    return found


def dry_run(apps: k8s.AppsV1Api) -> Callable[[dict[str, Any]], Awaitable[str | None]]:
    """Ask the API server whether it would create a Deployment (nothing is stored): its
    refusal's message, or None (also when it cannot say: the name is taken, say)."""

    async def ask(manifest: dict[str, Any]) -> str | None:
        try:
            await _call(
                apps.create_namespaced_deployment,
                manifest["metadata"]["namespace"],
                manifest,
                dry_run="All",
            )
        except ApiException as exc:
            if exc.status in (400, 422):
                return _api_message(exc)
            log.info("dry run of %s: %s %s", manifest["metadata"]["name"], exc.status, exc.reason)
        return None

    return ask


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


async def observe_gate_job(
    batch: k8s.BatchV1Api, resource: v1alpha1.WorkerDeployment, build: str
) -> GateJob | None:
    """The replay gate's Job of a build, if there is one."""
    name = gate_job_name(resource, build)
    try:
        job = await _call(batch.read_namespaced_job, name, resource.metadata.namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    failed = None
    for found in (job.status.conditions or []) if job.status else []:
        if found.type == "Failed" and found.status == "True":
            failed = f"{found.reason}: {found.message}" if found.message else str(found.reason)
    return GateJob(name=name, created=_meta(job).creation_timestamp, failed=failed)


async def observe(
    operator: Operator, resource: v1alpha1.WorkerDeployment, uid: str, body: kopf.Body
) -> tuple[Observed, DeploymentView, str | None]:
    """What Kubernetes, Temporal and Prometheus hold for the resource. Returns what was
    observed, Temporal's view (its conflict token) and why Temporal could not be asked."""
    apps, batch = _apis(operator)
    pods = await observe_pods(apps, resource, uid)
    target = build_id(resource)
    deployment = resource.deployment_name
    clients = await operator.clients()
    client = clients.get(resource.spec.temporal_namespace)
    outage = None
    try:
        view = await describe_deployment(client, deployment, {*pods, target})
    except Exception as exc:
        failure = classify(exc)
        if not failure.outage:
            raise
        view, outage = DeploymentView(), failure.message
    workflows: dict[str, Workflows] = {}
    if outage is None:
        builds = [b for b in {*pods, view.routing.current, view.routing.ramping} if b]
        counted = await asyncio.gather(
            *(count_workflows(client, deployment, b) for b in builds if b in view.versions)
        )
        workflows = dict(zip([b for b in builds if b in view.versions], counted, strict=True))
    jobs = {}
    gate_wanted = resource.spec.rollout.replay_gate.workflows and view.routing.current != target
    if gate_wanted:
        job = await observe_gate_job(batch, resource, target)
        if job is not None:
            jobs[target] = job
    seen = await firing_alerts(
        operator.http,
        operator.settings.rollout.prometheus_url,
        deployment,
        timeout=operator.settings.rollout.prometheus_timeout_seconds,
    )
    observed = Observed(
        now=now(),
        pods=pods,
        versions=None if outage else view.versions,
        routing=view.routing,
        pollers=view.pollers,
        workflows=workflows,
        gate_jobs=jobs,
        alerts=seen.alerts,
        alerts_note=seen.note,
        ready_reason=condition(body, "Ready").get("reason"),
    )
    return observed, view, outage


@dataclass(frozen=True)
class Seen:
    """One reconcile's view: the resource, and what was observed."""

    resource: v1alpha1.WorkerDeployment
    uid: str
    body: kopf.Body
    observed: Observed
    view: DeploymentView


async def carry_out(operator: Operator, seen: Seen, done: Plan) -> None:
    """Do what the plan says, in a safe order; post its Events once each step is done."""
    apps, batch = _apis(operator)
    resource, uid, body, observed = seen.resource, seen.uid, seen.body, seen.observed
    namespace = resource.metadata.namespace
    target = done.target
    owner: tuple[str, str] | None = None
    if target in observed.pods:
        owner = (observed.pods[target].name, observed.pods[target].uid)
    if done.create:
        manifest = deployment_manifest(resource, target, uid, resource.spec.replicas)
        try:
            made = await _call(apps.create_namespaced_deployment, namespace, manifest)
            owner = (str(_meta(made).name), str(_meta(made).uid))
            event(
                body,
                "Normal",
                "BuildDeployed",
                f"build {target}: created Deployment {manifest['metadata']['name']} "
                f"({resource.spec.replicas} replicas)",
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
    if done.update:
        name = deployment_name(resource, target)
        await _call(
            apps.patch_namespaced_deployment,
            name,
            namespace,
            {
                "metadata": {
                    "annotations": {
                        TEMPLATE_HASH_ANNOTATION: template_hash(template_json(resource))
                    }
                },
                "spec": {"template": worker_template(resource, target)},
            },
        )
        event(
            body,
            "Normal",
            "BuildUpdated",
            f"build {target}: the template changed but spec.buildId did not, so Deployment "
            f"{name} replaces its pods in place",
        )
    if done.gate_job and owner is not None:
        job = gate_job_manifest(
            resource,
            target,
            owner,
            sample_per_type=resource.spec.rollout.replay_gate.sample_per_type,
        )
        try:
            await _call(batch.create_namespaced_job, namespace, job)
            event(
                body,
                "Normal",
                "ReplayGateStarted",
                f"build {target}: Job {job['metadata']['name']} replays running workflows of "
                f"{resource.deployment_name} on its code",
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
    clients = await operator.clients()
    client = clients.get(resource.spec.temporal_namespace)
    if done.rollback is not None:
        build, why = done.rollback
        # First: once recorded, the build never gets work again from this operator.
        await record_rollback(client, resource.deployment_name, build, why, observed.now)
    if done.routing is not None:
        try:
            await change_routing(
                client, resource.deployment_name, done.routing, seen.view.conflict_token
            )
            log.info(
                "WorkerDeployment %s/%s: %s %s (%s)",
                namespace,
                resource.metadata.name,
                done.routing.action,
                done.routing.build_id or "",
                done.routing.reason,
            )
        except RoutingConflict as exc:
            log.info("WorkerDeployment %s: routing changed meanwhile (%s)", namespace, exc)
            done.routing = None  # not made: status shows what Temporal has
            return
    for name, replicas in done.scale.items():
        try:
            await _call(
                apps.patch_namespaced_deployment, name, namespace, {"spec": {"replicas": replicas}}
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
    for name in done.delete:
        try:
            await _call(
                apps.delete_namespaced_deployment,
                name,
                namespace,
                propagation_policy="Background",
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
    for kind, reason, message in done.events:
        event(body, kind, reason, message)


def write_status(
    body: Mapping[str, Any],
    patch: kopf.Patch,
    resource: v1alpha1.WorkerDeployment | None,
    conditions: list[Want],
    *,
    done: Plan | None = None,
    observed: Observed | None = None,
    generation: int | None = None,
) -> None:
    """Patch the status keys that changed."""
    status = body.get("status") or {}
    wanted: dict[str, Any] = {
        "conditions": merge_conditions(
            status.get("conditions") or [], conditions, now(), generation
        )
    }
    if resource is not None and done is not None and observed is not None:
        current, ramping, percentage = routed(observed.routing, done.routing)
        pods = observed.pods.get(current) if current else None
        wanted.update(
            {
                "observedGeneration": generation,
                "deploymentName": resource.deployment_name,
                "targetBuildId": done.target,
                "currentBuildId": current,
                "rampingBuildId": ramping,
                "rampPercentage": percentage if ramping else None,
                "versions": done.versions,
                "summary": done.summary,
                "replicas": pods.ready if pods else 0,
                "selector": current_selector(resource, current),
            }
        )
    for key, value in wanted.items():
        if status.get(key) != value:
            patch.status[key] = value


def _failure_conditions(failure: Want) -> list[Want]:
    return [
        Want("Ready", "False", failure.reason, failure.message),
        Want("Progressing", "False", failure.reason, failure.message),
    ]


async def reconcile(body: kopf.Body, patch: kopf.Patch, memo: Any, retry: int) -> None:
    """Observe, plan, act, and say so in status; every failure ends in a condition."""
    operator = operator_of(memo)
    check_size(body, memo, operator.settings)
    generation = body["metadata"].get("generation")
    uid = str(body["metadata"].get("uid"))
    resource: v1alpha1.WorkerDeployment | None = None

    def report(want: Want) -> None:
        write_status(body, patch, resource, _failure_conditions(want), generation=generation)

    try:
        resource = parse(body)
        observed, view, outage = await observe(operator, resource, uid, body)
        done = plan(resource, observed)
        await carry_out(operator, Seen(resource, uid, body, observed, view), done)
        conditions = done.conditions
        if outage is not None:
            conditions = [
                *_failure_conditions(Want("Ready", "False", "TemporalUnavailable", outage)),
                *conditions[2:],
            ]
        write_status(
            body,
            patch,
            resource,
            conditions,
            done=done,
            observed=observed,
            generation=generation,
        )
    except Exception as exc:
        fail(
            exc,
            body=body,
            retry=retry,
            settings=operator.settings,
            report=report,
            what="WorkerDeployment",
        )


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    """Add the WorkerDeployment handlers to ``registry``."""
    group, version = v1alpha1.GROUP, v1alpha1.VERSION

    @kopf.on.resume(group, version, PLURAL, id="rollout", registry=registry)
    @kopf.on.create(group, version, PLURAL, id="rollout", registry=registry)
    @kopf.on.update(group, version, PLURAL, id="rollout", field="spec", registry=registry)
    async def rollout(
        *, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, **_: Any
    ) -> None:
        """Run the spec's build, promote it when it may, keep old builds while they drain."""
        await reconcile_now(CONTROLLER, memo, lambda: reconcile(body, patch, memo, retry))

    @kopf.timer(
        group,
        version,
        PLURAL,
        id="progress",
        interval=settings.rollout.interval_seconds,
        initial_delay=settings.rollout.interval_seconds,
        registry=registry,
    )
    async def progress(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
        """Move the rollout on: pollers, the gate's verdict, ramp steps, drainage, alerts."""
        await resync(
            CONTROLLER,
            body,
            patch,
            memo,
            stopped=kwargs["stopped"],
            reconcile=lambda: reconcile(body, patch, memo, 0),
        )
