"""Registering Muster's search attributes in a namespace, idempotently.

The attributes themselves are defined in :mod:`muster_api.search_attributes`. ``muster up``
and the test fixtures register them; on a real cluster, ``muster search-attributes`` does it
once per namespace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import CountWorkflowExecutionsRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

from muster_api.search_attributes import ALL, wire_type


class SearchAttributeConflict(RuntimeError):
    """A search attribute exists in the namespace with a different type."""


async def registered(client: Client, namespace: str) -> dict[str, int]:
    """Custom search attributes of a namespace, by name, with their indexed type."""
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return {name: int(kind) for name, kind in response.custom_attributes.items()}


async def add_search_attributes(
    client: Client, namespace: str, keys: Sequence[SearchAttributeKey[Any]] = ALL
) -> None:
    """Register ``keys`` without looking first (for servers that cannot list them, like
    Temporal's time-skipping test server); prefer :func:`ensure_search_attributes`."""
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            search_attributes={key.name: wire_type(key) for key in keys}, namespace=namespace
        )
    )


async def ensure_search_attributes(
    client: Client,
    namespace: str,
    keys: Sequence[SearchAttributeKey[Any]] = ALL,
    *,
    timeout: float = 90.0,
) -> list[str]:
    """Register whichever of ``keys`` are missing; return the names that were added, once a
    visibility query naming every key is accepted.

    Listing shows a new attribute at once, but the server answers queries and validates
    workflow starts from caches: the namespace's attribute names refresh every 2 s (SQL
    visibility), the attribute types every 60 s (Elasticsearch). Hence the default timeout.
    Raises SearchAttributeConflict when a name exists with another type, rather than
    silently reusing it.
    """
    deadline = time.monotonic() + timeout
    existing = await registered(client, namespace)
    conflicts = [
        f"{key.name} is {IndexedValueType.Name(IndexedValueType.ValueType(existing[key.name]))}, "
        f"Muster needs "
        f"{IndexedValueType.Name(wire_type(key))}"
        for key in keys
        if key.name in existing and existing[key.name] != int(key.indexed_value_type)
    ]
    if conflicts:
        raise SearchAttributeConflict(
            f"namespace {namespace!r} has search attributes of the wrong type: "
            + "; ".join(conflicts)
            + " (remove them with `temporal operator search-attribute remove` or use another "
            "namespace)"
        )
    missing = {key.name: wire_type(key) for key in keys if key.name not in existing}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(search_attributes=missing, namespace=namespace)
        )
    # Also when nothing was missing: another process may have added them a moment ago.
    await _until_queryable(client, namespace, [key.name for key in keys], deadline, timeout)
    return sorted(missing)


async def _until_queryable(
    client: Client, namespace: str, names: Sequence[str], deadline: float, timeout: float
) -> None:
    """Wait until the frontend accepts a visibility query that names every one of ``names``
    (it refuses an unknown name with INVALID_ARGUMENT "invalid search attribute"). The query
    counts against the namespace's visibility rate; the SDK's retries wait out a throttled
    one (RESOURCE_EXHAUSTED) instead of failing a start-up beside a busy gateway."""
    if not names:
        return
    query = " AND ".join(f"{name} IS NOT NULL" for name in sorted(names))
    while True:
        try:
            await client.workflow_service.count_workflow_executions(
                CountWorkflowExecutionsRequest(namespace=namespace, query=query), retry=True
            )
            return
        except RPCError as exc:
            if exc.status != RPCStatusCode.INVALID_ARGUMENT:
                raise
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"search attributes of namespace {namespace!r} are listed but the server "
                    f"still refuses a query naming them after {timeout:.0f}s ({exc.message}); "
                    "run the command again, or give the server's search-attribute cache "
                    "longer to refresh"
                ) from exc
        await asyncio.sleep(0.2)
