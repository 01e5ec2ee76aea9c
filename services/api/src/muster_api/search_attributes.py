"""Muster's custom search attributes, in one place.

Workflows upsert these so pending approvals, orders needing attention and scheduled runs
can be listed with visibility queries (``MusterPattern = 'approval' AND MusterStatus =
'pending'``). :mod:`muster_runtime.search_attributes` registers them in a namespace.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.common import SearchAttributeKey

PATTERN = SearchAttributeKey.for_keyword("MusterPattern")
"""Which Muster pattern a workflow belongs to: approval, schedule, fulfillment, canary."""
STATUS = SearchAttributeKey.for_keyword("MusterStatus")
"""The pattern's business status (pending, approved, fulfilled, needs_attention, ...)."""
BUSINESS_KEY = SearchAttributeKey.for_keyword("MusterBusinessKey")
"""The business identifier: order id, approval request id, schedule name."""
REQUESTER = SearchAttributeKey.for_keyword("MusterRequester")
"""Who asked: the requester of an approval or the customer of an order."""
REQUEST_KIND = SearchAttributeKey.for_keyword("MusterRequestKind")
"""The kind of an approval request (purchase, access, deploy, ...)."""
POLICY = SearchAttributeKey.for_keyword("MusterPolicy")
"""The ApprovalPolicy (namespace/name) a request is governed by."""
CURRENCY = SearchAttributeKey.for_keyword("MusterCurrency")
"""ISO 4217 currency of MusterAmountMinor."""
SCHEDULE = SearchAttributeKey.for_keyword("MusterSchedule")
"""The Schedule resource (namespace/name) that started a workflow."""
APPROVERS = SearchAttributeKey.for_keyword_list("MusterApprovers")
"""Users who may currently decide an approval request."""
DECIDED_BY = SearchAttributeKey.for_keyword_list("MusterDecidedBy")
"""Users who decided an approval request (approved or rejected), kept after it ends."""
AMOUNT_MINOR = SearchAttributeKey.for_int("MusterAmountMinor")
"""An amount in minor units (cents), for orders and purchase approvals."""
NEEDS_ATTENTION = SearchAttributeKey.for_bool("MusterNeedsAttention")
"""True while a workflow waits for a person to resolve a problem."""

ALL: tuple[SearchAttributeKey[Any], ...] = (
    PATTERN,
    STATUS,
    BUSINESS_KEY,
    REQUESTER,
    REQUEST_KIND,
    POLICY,
    CURRENCY,
    SCHEDULE,
    APPROVERS,
    DECIDED_BY,
    AMOUNT_MINOR,
    NEEDS_ATTENTION,
)


POLICY_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
"""An ApprovalPolicy's name (a Kubernetes object name), safe inside a visibility query."""


def pending_approvals_query(policy: str) -> str:
    """The visibility query for a policy's approval requests that still wait."""
    if not re.fullmatch(POLICY_NAME, policy):
        raise ValueError(f"{policy!r} is not an ApprovalPolicy name")
    return (
        f"{PATTERN.name} = 'approval' AND ExecutionStatus = 'Running' AND "
        f"{POLICY.name} = '{policy}'"
    )


def cli_types(keys: Sequence[SearchAttributeKey[Any]] = ALL) -> dict[str, str]:
    """Name -> type as ``temporal server start-dev --search-attribute`` spells it."""
    names = {
        IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD: "Keyword",
        IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST: "KeywordList",
        IndexedValueType.INDEXED_VALUE_TYPE_INT: "Int",
        IndexedValueType.INDEXED_VALUE_TYPE_BOOL: "Bool",
        IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE: "Double",
        IndexedValueType.INDEXED_VALUE_TYPE_TEXT: "Text",
        IndexedValueType.INDEXED_VALUE_TYPE_DATETIME: "Datetime",
    }
    return {key.name: names[wire_type(key)] for key in keys}


def wire_type(key: SearchAttributeKey[Any]) -> IndexedValueType.ValueType:
    return IndexedValueType.ValueType(int(key.indexed_value_type))
