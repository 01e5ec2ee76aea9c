"""The validating admission webhook: ``kubectl apply`` is refused with the message the
resource's status would otherwise have shown later.

A resource is checked with the reconcile core itself (:func:`reconcile.parse_schedule`,
:func:`policies.parse_policy`), so the refusal is word for word the ``InvalidSpec``
condition's message. A Schedule is also checked against Temporal, through the operator's
client and a short cache: its Temporal namespace must exist, and each of its search
attributes must be registered there as a Keyword.

When Temporal cannot be reached within ``temporal_timeout_seconds``, the resource is
admitted with a warning (``kubectl`` prints it): refusing would stop every edit, a
``suspend: true`` included, during a Temporal outage. The operator then finds what
Temporal refuses when it reconciles, and says so in status. Updates that leave the spec
alone (finalizers, annotations, a delete in progress) are never refused, so no resource
can be kept from being deleted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from muster_api import v1alpha1
from muster_operator.policies import parse_policy
from muster_operator.reconcile import SpecError, TemporalUnavailable, parse_model, parse_schedule
from muster_operator.rollouts import build_id, deployment_manifest
from muster_operator.sync import Clients

T = TypeVar("T")

UNCHECKED = (
    "Temporal could not be reached ({why}), so the Temporal namespace and the search "
    "attributes were not checked; the operator checks them when it reaches Temporal and "
    "reports problems in the resource's status"
)


class Refused(Exception):
    """The resource must not be admitted; the message says why and what to do."""


@dataclass
class TemporalFacts:
    """What Temporal says about namespaces and search attributes, cached for ``ttl``
    seconds (an answer is shared by every admission request in that time)."""

    ttl: float
    timeout: float
    _cache: dict[tuple[str, str], tuple[float, Any]] = field(default_factory=dict)

    async def _cached(self, key: tuple[str, str], ask: Callable[[], Awaitable[T]]) -> T:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            value: T = hit[1]
            return value
        value = await ask()
        self._cache[key] = (now + self.ttl, value)
        return value

    async def namespace_exists(self, client: Client, namespace: str) -> bool:
        """Whether the Temporal namespace exists."""

        async def ask() -> bool:
            try:
                await client.workflow_service.describe_namespace(
                    DescribeNamespaceRequest(namespace=namespace),
                    timeout=_seconds(self.timeout),
                )
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    return False
                raise
            return True

        return await self._cached(("namespace", namespace), ask)

    async def search_attributes(self, client: Client, namespace: str) -> dict[str, str | None]:
        """Name -> type (Keyword, Int, ...) of the namespace's custom search attributes, and
        name -> None for Temporal's own."""

        async def ask() -> dict[str, str | None]:
            listed = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=namespace), timeout=_seconds(self.timeout)
            )
            found: dict[str, str | None] = dict.fromkeys(listed.system_attributes)
            for name, kind in listed.custom_attributes.items():
                found[name] = _type_name(kind)
            return found

        return await self._cached(("search-attributes", namespace), ask)


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def _type_name(kind: int) -> str:
    name = IndexedValueType.Name(kind)  # type: ignore[arg-type]
    return str(name).removeprefix("INDEXED_VALUE_TYPE_").title().replace("_", "")


async def temporal_problems(
    client: Client, resource: v1alpha1.Schedule, namespace: str, facts: TemporalFacts
) -> list[str]:
    """What Temporal would refuse about a Schedule (empty: nothing)."""
    if not await facts.namespace_exists(client, namespace):
        where = "spec.temporal.namespace"
        if not resource.spec.temporal.namespace:
            where += " (unset: the operator's TEMPORAL_NAMESPACE)"
        return [
            f"{where}: Temporal namespace '{namespace}' does not exist; create it "
            f"(temporal operator namespace create --namespace {namespace}) or name one that does"
        ]
    wanted = resource.spec.workflow.search_attributes
    if not wanted:
        return []
    registered = await facts.search_attributes(client, namespace)
    problems = []
    for name in sorted(wanted):
        where = f"spec.workflow.searchAttributes.{name}"
        if name not in registered:
            problems.append(
                f"{where}: not registered in Temporal namespace '{namespace}'; register it "
                f"(temporal operator search-attribute create --namespace {namespace} --name "
                f"{name} --type Keyword) or remove it"
            )
        elif registered[name] is None:
            problems.append(
                f"{where}: is one of Temporal's own search attributes; runs cannot set it"
            )
        elif registered[name] != "Keyword":
            problems.append(
                f"{where}: registered in Temporal namespace '{namespace}' as {registered[name]}, "
                "but Muster sets search attributes as Keyword values; use a Keyword attribute"
            )
    return problems


def _spec_unchanged(body: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    """An update that leaves the spec alone, or one to a resource being deleted."""
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return True
    return old is not None and old.get("spec") == body.get("spec")


async def check_in_temporal(
    client: Client, resource: v1alpha1.Schedule, namespace: str, facts: TemporalFacts
) -> None:
    """Raise :class:`SpecError` with :func:`temporal_problems`' words, if it finds any (the
    reconciler's side of the webhook's Temporal checks)."""
    problems = await temporal_problems(client, resource, namespace, facts)
    if problems:
        raise SpecError("; ".join(problems))


async def review_schedule(
    body: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    operation: str | None,
    *,
    clients: Callable[[], Awaitable[Clients]],
    default_namespace: str,
    facts: TemporalFacts,
) -> list[str]:
    """Refuse (raise :class:`Refused`) or admit a Schedule; returns warnings for kubectl."""
    if operation == "UPDATE" and _spec_unchanged(body, old):
        return []
    try:
        resource = parse_schedule(body)
    except SpecError as exc:
        raise Refused(str(exc)) from None
    try:
        found = await asyncio.wait_for(clients(), timeout=facts.timeout)
        namespace = resource.spec.temporal.namespace or default_namespace
        problems = await asyncio.wait_for(
            temporal_problems(found.default, resource, namespace, facts), timeout=facts.timeout
        )
    except (TimeoutError, TemporalUnavailable, RPCError, OSError) as exc:
        why = (
            "no answer in time" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        )
        return [UNCHECKED.format(why=why)]
    if problems:
        raise Refused("; ".join(problems))
    return []


async def review_worker_deployment(
    body: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    operation: str | None,
    *,
    dry_run: Callable[[dict[str, Any]], Awaitable[str | None]] | None = None,
) -> None:
    """Refuse (raise :class:`Refused`) or admit a WorkerDeployment: the model's rules, and
    the pod template as Kubernetes reads it: ``dry_run`` asks the API server to check the
    Deployment the operator would create (a dry run; None: Kubernetes had nothing to say),
    so a bad template is refused now rather than reported later."""
    if operation == "UPDATE" and _spec_unchanged(body, old):
        return
    try:
        resource = parse_model(v1alpha1.WorkerDeployment, body)
    except SpecError as exc:
        raise Refused(str(exc)) from None
    if dry_run is None:
        return
    manifest = deployment_manifest(resource, build_id(resource), "", resource.spec.replicas)
    del manifest["metadata"]["ownerReferences"]  # the resource has no uid before it exists
    problem = await dry_run(manifest)
    if problem:
        raise Refused(f"spec.template: the Deployment of this build would be refused: {problem}")


def review_policy(
    body: Mapping[str, Any], old: Mapping[str, Any] | None, operation: str | None
) -> None:
    """Refuse (raise :class:`Refused`) or admit an ApprovalPolicy."""
    if operation == "UPDATE" and _spec_unchanged(body, old):
        return
    try:
        parse_policy(body)
    except SpecError as exc:
        raise Refused(str(exc)) from None
