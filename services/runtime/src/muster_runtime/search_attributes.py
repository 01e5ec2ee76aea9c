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
from temporalio.client import Client
from temporalio.common import SearchAttributeKey

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
    timeout: float = 30.0,
) -> list[str]:
    """Register whichever of ``keys`` are missing; return the names that were added.

    Raises SearchAttributeConflict when a name exists with another type, rather than
    silently reusing it.
    """
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
    if not missing:
        return []
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(search_attributes=missing, namespace=namespace)
    )
    deadline = time.monotonic() + timeout
    while True:
        now = await registered(client, namespace)
        if all(name in now for name in missing):
            return sorted(missing)
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"search attributes {sorted(set(missing) - set(now))} not visible after {timeout}s"
            )
        await asyncio.sleep(0.2)
