"""The operator's fix for namespaces found by glob (``muster_operator.namespaces``): kopf
drops the namespaces its watch stream lists (events of type ``None``), so one created
between kopf's first listing and the stream's, or while an expired watch is listed again,
would never be served; the fix records them as the first listing does, and leaves kopf's
handling of real watch events (ADDED, MODIFIED, DELETED) as it was. The operator installs
it before kopf starts (``python -m muster_operator``); the kube tier's operator tests, which
create a namespace right after the operator starts, run with it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
from kopf._cogs.structs import bodies, references
from kopf._core.reactor import observation

from muster_operator import namespaces

GLOBS: list[references.NamespacePattern] = ["team-*"]


def event(kind: str | None, name: str, **metadata: Any) -> bodies.RawEvent:
    raw = {"type": kind, "object": {"metadata": {"name": name, **metadata}}}
    return cast(bodies.RawEvent, raw)


@pytest.fixture
def installed() -> Iterator[None]:
    original = observation.process_discovered_namespace_event
    namespaces.install()
    yield
    observation.process_discovered_namespace_event = original


async def test_kopf_alone_drops_a_namespace_its_watch_lists() -> None:
    # Why the fix exists: if kopf ever records these itself, the fix can go.
    insights = references.Insights()
    await namespaces._kopfs_own(
        raw_event=event(None, "team-new"), namespaces=GLOBS, insights=insights
    )
    assert insights.namespaces == set()


async def test_a_listed_namespace_that_matches_is_served() -> None:
    insights = references.Insights()
    for name in ("team-new", "kube-system", "teams"):
        await namespaces.process_discovered_namespace_event(
            raw_event=event(None, name), namespaces=GLOBS, insights=insights
        )
    assert insights.namespaces == {"team-new"}


async def test_watch_events_are_kopfs_as_before() -> None:
    insights = references.Insights()
    handle = namespaces.process_discovered_namespace_event
    await handle(raw_event=event("ADDED", "team-a"), namespaces=GLOBS, insights=insights)
    await handle(raw_event=event("ADDED", "other"), namespaces=GLOBS, insights=insights)
    assert insights.namespaces == {"team-a"}
    # Being deleted, with content still to go, it is still served (its finalizers).
    terminating = event("MODIFIED", "team-a", deletionTimestamp="2026-01-01T00:00:00Z")
    terminating["object"]["status"] = {
        "conditions": [{"type": "NamespaceContentRemaining", "status": "True"}]
    }
    await handle(raw_event=terminating, namespaces=GLOBS, insights=insights)
    assert insights.namespaces == {"team-a"}
    await handle(raw_event=event("DELETED", "team-a"), namespaces=GLOBS, insights=insights)
    assert insights.namespaces == set()
    # A stream's keyword arguments (stream pressure, indexing toggles) are passed on.
    await handle(
        raw_event=event("ADDED", "team-b"), namespaces=GLOBS, insights=insights,
        stream_pressure=None, resource_indexed=None,
    )  # fmt: skip
    assert insights.namespaces == {"team-b"}


def test_install_puts_it_where_kopfs_namespace_watch_looks(installed: None) -> None:
    assert observation.process_discovered_namespace_event is (
        namespaces.process_discovered_namespace_event
    )
