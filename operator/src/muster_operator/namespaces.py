"""Namespaces found by glob (``MUSTER_OPERATOR_NAMESPACES='["team-*"]'``), none missed.

kopf finds the namespaces that match a glob in two steps: it lists them once, then starts
a watch stream on namespaces. That stream begins with a listing of its own, whose objects
kopf passes on as events of type ``None``, and kopf drops every such event. So a namespace
created between the two listings (an operator starting while a team creates one), or while
an expired watch is listed again, is never served: its Schedules and ApprovalPolicies wait
until something else changes the namespace, such as its deletion.

The objects of a listing are namespaces that exist, exactly what kopf's first listing
records; :func:`install` has kopf record those of the stream's listings too. A namespace
that is gone is still removed by its DELETED event, as before.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from kopf._cogs.structs import bodies, references
from kopf._core.reactor import observation

_kopfs_own = observation.process_discovered_namespace_event


async def process_discovered_namespace_event(
    *,
    raw_event: bodies.RawEvent,
    namespaces: Collection[references.NamespacePattern],
    insights: references.Insights,
    **kwargs: Any,
) -> None:
    """kopf's handling of one event of the namespace watch, and a listed namespace
    recorded as kopf's first listing records it."""
    if raw_event["type"] is not None:
        await _kopfs_own(raw_event=raw_event, namespaces=namespaces, insights=insights, **kwargs)
        return
    async with insights.revised:
        observation.revise_namespaces(
            raw_events=[raw_event], insights=insights, namespaces=namespaces
        )
        insights.revised.notify_all()


def install() -> None:
    """Use :func:`process_discovered_namespace_event` for kopf's namespace watch (it looks
    the function up when it starts the watch, so this must run before ``kopf.run``)."""
    observation.process_discovered_namespace_event = process_discovered_namespace_event
