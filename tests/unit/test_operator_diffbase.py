"""kopf's diff base as the operator stores it (:mod:`muster_operator.diffbase`): digests per
field, never a copy of the spec, so its size does not grow with the spec; kopf still sees
which fields changed (and the sync handler whether ``spec.remainingActions`` did); an
earlier operator's full copy is read as the same digests and replaced."""

from __future__ import annotations

import json
from typing import Any

import kopf

# kopf's own diff functions, as its reactor calls them on the stored and the built essence.
from kopf._cogs.structs.diffs import diff, reduce

from muster_operator.diffbase import FIELD, LEGACY_FIELD, DigestDiffBaseStorage, digest, migrate
from muster_operator.schedules import _remaining_changed


def body(spec: dict[str, Any], status: dict[str, Any] | None = None, **metadata: Any) -> kopf.Body:
    raw = {
        "apiVersion": "muster.io/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": "x", "namespace": "n", "uid": "u", "generation": 3, **metadata},
        "spec": spec,
        "status": status or {},
    }
    return kopf.Body(raw)  # type: ignore[arg-type]


WORKFLOW: dict[str, Any] = {"type": "W", "taskQueue": "q", "args": ["a"]}
SPEC: dict[str, Any] = {"cron": ["0 6 * * *"], "workflow": WORKFLOW}


def test_the_stored_essence_does_not_grow_with_the_spec() -> None:
    storage = DigestDiffBaseStorage()
    small = storage.build(body=body(SPEC))
    big_spec = {**SPEC, "workflow": {**WORKFLOW, "args": ["x" * 1_000_000]}}
    big = storage.build(body=body(big_spec))
    assert set(big["spec"]) == {"cron", "workflow"}
    assert len(json.dumps(big)) == len(json.dumps(small)) < 200
    assert big["spec"]["workflow"] != small["spec"]["workflow"]
    assert big["spec"]["cron"] == small["spec"]["cron"]


def test_store_then_fetch_round_trips_and_drops_the_old_copy() -> None:
    storage = DigestDiffBaseStorage()
    legacy = json.dumps({"spec": SPEC})
    current = body(SPEC, {"kopf": {"lastHandledConfiguration": legacy}})
    patch = kopf.Patch()
    essence = storage.build(body=current)
    storage.store(body=current, patch=patch, essence=essence)
    assert patch["status"]["kopf"]["lastHandledConfiguration"] is None
    stored = body(
        SPEC, {"kopf": {"lastHandledDigest": patch["status"]["kopf"]["lastHandledDigest"]}}
    )
    assert storage.fetch(body=stored) == essence


def test_an_earlier_operators_copy_reads_as_no_change() -> None:
    storage = DigestDiffBaseStorage()
    legacy = body(SPEC, {"kopf": {"lastHandledConfiguration": json.dumps({"spec": SPEC})}})
    assert not diff(storage.fetch(body=legacy), storage.build(body=legacy))
    patch = kopf.Patch()
    migrate(legacy, patch)
    assert patch["status"]["kopf"] == {
        "lastHandledDigest": json.dumps(
            digest({"spec": SPEC}), sort_keys=True, separators=(",", ":")
        ),
        "lastHandledConfiguration": None,
    }
    nothing = kopf.Patch()
    migrate(body(SPEC), nothing)
    assert not nothing


def test_garbage_in_the_stored_field_counts_as_nothing_stored() -> None:
    storage = DigestDiffBaseStorage()
    assert storage.fetch(body=body(SPEC, {"kopf": {"lastHandledDigest": "{oops"}})) is None
    assert FIELD.startswith("status.kopf.")
    assert LEGACY_FIELD.startswith("status.kopf.")


def test_the_sync_handler_sees_which_spec_fields_changed() -> None:
    storage = DigestDiffBaseStorage()
    before = storage.build(body=body({**SPEC, "remainingActions": 3}))
    edited = storage.build(body=body({**SPEC, "remainingActions": 5}))
    other = storage.build(body=body({**SPEC, "remainingActions": 3, "suspend": True}))
    # The update handler watches field="spec": kopf hands it the diff relative to spec.
    assert _remaining_changed(reduce(diff(before, edited), ("spec",)))
    assert not _remaining_changed(reduce(diff(before, other), ("spec",)))
    added = storage.build(body=body(SPEC))
    assert _remaining_changed(reduce(diff(added, before), ("spec",)))
    annotated = storage.build(body=body(SPEC, annotations={"muster.io/trigger": "t1"}))
    assert reduce(diff(added, annotated), ("metadata", "annotations"))
