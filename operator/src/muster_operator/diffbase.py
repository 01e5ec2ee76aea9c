"""kopf's diff base, bounded: digests of what the operator last handled, never a copy.

kopf remembers the "essence" of each resource it handled (spec, labels, annotations) to tell
a real change from a status write, and to compute the ``diff`` an update handler gets. Its
stock storages keep the whole essence as JSON, in an annotation or in status: a second copy
of the spec, so a spec of half of etcd's request limit (1.5 MiB by default) makes every
status write fail with ``etcdserver: request is too large``. Here the essence is stored as
one short digest per field (``spec.cron``, ``spec.workflow``, ``metadata.annotations``...):
its size depends on how many fields the schema has, not on what they hold. kopf still sees
which fields changed (``diff`` names them; its old and new values are digests), which is
all the handlers use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, cast

import kopf

FIELD = "status.kopf.lastHandledDigest"
"""Where the digests live (a JSON string, like kopf's own storages keep theirs)."""
LEGACY_FIELD = "status.kopf.lastHandledConfiguration"
"""Where earlier versions kept a full copy of the essence; read once, then removed."""


def _path(field: str) -> tuple[str, ...]:
    return tuple(field.split("."))


def _resolve(body: Mapping[str, Any], field: str) -> Any:
    node: Any = body
    for key in _path(field):
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _ensure(patch: kopf.Patch, field: str, value: Any) -> None:
    *parents, leaf = _path(field)
    node: Any = patch
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def value_digest(value: Any) -> str:
    """A short, stable digest of a JSON value."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def digest(essence: Mapping[str, Any]) -> dict[str, Any]:
    """An essence with every second-level value replaced by its digest.

    ``{"spec": {"cron": [...], "workflow": {...}}, "metadata": {"annotations": {...}}}``
    becomes ``{"spec": {"cron": "…", "workflow": "…"}, "metadata": {"annotations": "…"}}``,
    so kopf's diff still names ``spec.cron`` when the cron changed.
    """
    out: dict[str, Any] = {}
    for key, value in essence.items():
        if isinstance(value, Mapping):
            out[key] = {name: value_digest(inner) for name, inner in value.items()}
        else:
            out[key] = value_digest(value)
    return out


class DigestDiffBaseStorage(kopf.DiffBaseStorage):
    """kopf's diff base as digests in ``status.kopf.lastHandledDigest`` (see the module)."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        essence = dict(super().build(body=body, extra_fields=extra_fields))
        essence.pop("status", None)  # only there when a handler watches a status field
        return cast(kopf.BodyEssence, digest(essence))

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        stored = _loads(_resolve(body, FIELD))
        if stored is not None:
            return cast(kopf.BodyEssence, stored)
        legacy = _loads(_resolve(body, LEGACY_FIELD))
        if legacy is not None:
            # What an earlier operator stored: the same digests, so an upgrade is no change.
            return cast(kopf.BodyEssence, digest(legacy))
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        _ensure(patch, FIELD, json.dumps(essence, sort_keys=True, separators=(",", ":")))
        if _resolve(body, LEGACY_FIELD) is not None:
            _ensure(patch, LEGACY_FIELD, None)


def _loads(text: Any) -> dict[str, Any] | None:
    """A stored essence, or None when there is none (or it is not an essence: then kopf
    handles the resource as new, which the idempotent reconcile makes harmless)."""
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def migrate(body: Mapping[str, Any], patch: kopf.Patch) -> None:
    """Replace an earlier operator's full copy of the essence by its digests (once, at a
    resync of a resource that has not changed since the upgrade)."""
    if _resolve(body, LEGACY_FIELD) is None:
        return
    legacy = _loads(_resolve(body, LEGACY_FIELD))
    if _resolve(body, FIELD) is None and legacy is not None:
        stored = json.dumps(digest(legacy), sort_keys=True, separators=(",", ":"))
        _ensure(patch, FIELD, stored)
    _ensure(patch, LEGACY_FIELD, None)
