"""What the gateway does, over Temporal: approvals and orders, with authorization.

Both the JSON API and the approver page call these; every refusal is a
:class:`GatewayError` that the HTTP layer renders as ``application/problem+json``.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from muster_api import approval, fulfillment
from muster_api import search_attributes as sa
from muster_api.approval import (
    ApprovalRequest,
    ApprovalState,
    ApprovalStatus,
    Decision,
    PolicySnapshot,
)
from muster_api.common import Money
from muster_api.fulfillment import (
    FulfillmentInput,
    Order,
    OrderState,
    ResolveInput,
    approval_request_id,
    start_attributes,
)
from muster_gateway.auth import Caller
from muster_gateway.tracing import annotate
from muster_runtime.policies import Directory

_SAFE = re.compile(r"^[A-Za-z0-9._@:+-]{1,256}$")

# Update failures and what they mean to an HTTP caller.
REFUSALS = {
    "NotAnApprover": (403, "forbidden", "Not an approver"),
    "SelfApproval": (403, "forbidden", "Self-approval not allowed"),
    "AlreadyDecided": (409, "already-decided", "Request already decided"),
    "DecisionChanged": (409, "decision-changed", "Decision cannot be changed"),
    "ReasonRequired": (422, "reason-required", "Reason required"),
    "NotReady": (503, "not-ready", "Request still starting"),
}


class GatewayError(Exception):
    """A refusal with its HTTP status and RFC 9457 problem type."""

    def __init__(self, status: int, kind: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail


class NewApproval(BaseModel):
    """What a requester asks to approve."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9-]*$")
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    amount: Money | None = None
    policy: str | None = Field(default=None, description="default: the policy that applies")
    context: dict[str, str] = Field(default_factory=dict, max_length=50)


class ApprovalSummary(BaseModel):
    """One line of a list of requests."""

    request_id: str
    title: str
    kind: str
    requester: str
    policy: str
    status: str
    amount: Money | None = None
    waiting_for: list[str] = Field(default_factory=list)
    started: datetime | None = None


class DecisionBody(BaseModel):
    """An approve or reject from the caller."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=2000)


def _fingerprint(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _safe(value: str, what: str) -> str:
    if not _SAFE.match(value):
        raise GatewayError(422, "validation", "Invalid filter", f"{what} {value!r} is not valid")
    return value


@dataclass
class Gateway:
    """The operations, bound to a Temporal client and the people and policies files."""

    client: Client
    policies: Callable[[], dict[str, PolicySnapshot]]
    directory: Callable[[], Directory]
    approvals_task_queue: str
    orders_task_queue: str
    admin_group: str

    # -- people ------------------------------------------------------------------------------

    def is_admin(self, caller: Caller) -> bool:
        """Members of the admin group (from the directory or the proxy) see everything."""
        person = self.directory().users.get(caller.user)
        groups = set(caller.groups) | set(person.groups if person else [])
        return self.admin_group in groups

    def display_name(self, user: str) -> str:
        """A person's name, or their id."""
        person = self.directory().users.get(user)
        return person.name if person and person.name else user

    # -- approvals ---------------------------------------------------------------------------

    def choose_policy(self, body: NewApproval) -> PolicySnapshot:
        """The named policy (checked to apply), or the most specific one that applies."""
        policies = self.policies()
        unique = {p.name: p for p in policies.values()}
        if body.policy is not None:
            chosen = policies.get(body.policy)
            if chosen is None:
                raise GatewayError(
                    422, "unknown-policy", "Unknown policy",
                    f"no ApprovalPolicy named {body.policy!r}; known: {', '.join(sorted(unique))}",
                )  # fmt: skip
            why_not = chosen.applies(body.kind, body.amount)
            if why_not is not None:
                raise GatewayError(422, "policy-does-not-apply", "Policy does not apply", why_not)
            return chosen
        candidates = [p for p in unique.values() if p.applies(body.kind, body.amount) is None]
        if not candidates:
            raise GatewayError(
                422, "no-policy", "No policy applies",
                f"no ApprovalPolicy governs kind {body.kind!r}"
                + (f" with amount {body.amount}" if body.amount else "")
                + f"; known: {', '.join(sorted(unique))}",
            )  # fmt: skip

        def specificity(policy: PolicySnapshot) -> tuple[int, int]:
            applies = policy.spec.applies_to
            minimum = applies.min_amount.amount_minor if applies.min_amount else -1
            return (len(applies.kinds) > 0, minimum)

        candidates.sort(key=specificity, reverse=True)
        if len(candidates) > 1 and specificity(candidates[0]) == specificity(candidates[1]):
            names = ", ".join(p.name for p in candidates)
            raise GatewayError(
                422, "ambiguous-policy", "More than one policy applies",
                f"policies {names} all apply; name one in 'policy'",
            )  # fmt: skip
        return candidates[0]

    async def create_approval(
        self, caller: Caller, body: NewApproval, idempotency_key: str | None
    ) -> tuple[ApprovalState, bool]:
        """Start a request for the caller; with a key, a repeat returns the same request."""
        policy = self.choose_policy(body)
        if idempotency_key is not None:
            digest = hashlib.sha256(f"{caller.user}\n{idempotency_key}".encode()).hexdigest()
            request_id = f"req-{digest[:20]}"
        else:
            request_id = f"req-{uuid.uuid4().hex[:20]}"
        annotate(request_id=request_id)
        request = ApprovalRequest(
            request_id=request_id,
            kind=body.kind,
            requester=caller.user,
            title=body.title,
            description=body.description,
            amount=body.amount,
            policy=policy.name,
            context=body.context,
        )
        fingerprint = _fingerprint(body.model_dump(mode="json"))
        attributes = [
            SearchAttributePair(sa.PATTERN, "approval"),
            SearchAttributePair(sa.STATUS, ApprovalStatus.PENDING.value),
            SearchAttributePair(sa.BUSINESS_KEY, request_id),
            SearchAttributePair(sa.REQUESTER, caller.user),
            SearchAttributePair(sa.REQUEST_KIND, body.kind),
            SearchAttributePair(sa.POLICY, policy.name),
        ]
        try:
            await self.client.start_workflow(
                approval.WORKFLOW,
                request,
                id=approval.workflow_id(request_id),
                task_queue=self.approvals_task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes(attributes),
                memo={"title": body.title, "fingerprint": fingerprint},
            )
            created = True
        except WorkflowAlreadyStartedError:
            handle = self.client.get_workflow_handle(approval.workflow_id(request_id))
            memo = await (await handle.describe()).memo()
            if memo.get("fingerprint") != fingerprint:
                raise GatewayError(
                    422, "idempotency-conflict", "Idempotency-Key reused",
                    f"Idempotency-Key {idempotency_key!r} was already used for a different "
                    "request; use a new key for a new request",
                ) from None  # fmt: skip
            created = False
        return await self._approval_state(request_id), created

    async def _approval_state(self, request_id: str) -> ApprovalState:
        handle = self.client.get_workflow_handle(approval.workflow_id(request_id))
        try:
            state: ApprovalState = await handle.query(
                approval.STATE_QUERY, result_type=ApprovalState
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise GatewayError(
                    404, "not-found", "No such request", f"no approval request {request_id!r}"
                ) from None
            raise
        return state

    def _may_see(self, caller: Caller, state: ApprovalState) -> bool:
        involved = (
            {state.request.requester} | set(state.approvers) | {d.approver for d in state.decisions}
        )
        return caller.user in involved or self.is_admin(caller)

    async def get_approval(self, caller: Caller, request_id: str) -> ApprovalState:
        """A request, if the caller is involved in it (or an admin)."""
        state = await self._approval_state(request_id)
        if not self._may_see(caller, state):
            raise GatewayError(
                403, "forbidden", "Not yours",
                f"{caller.user} is neither requester nor approver of {request_id}",
            )  # fmt: skip
        return state

    async def list_approvals(
        self,
        caller: Caller,
        *,
        status: str | None = None,
        policy: str | None = None,
        approver: str | None = None,
        decided_by: str | None = None,
        limit: int = 50,
    ) -> list[ApprovalSummary]:
        """Requests matching the filters that the caller is involved in (all, for admins)."""
        clauses = ["MusterPattern = 'approval'"]
        if status is not None:
            if status not in {s.value for s in ApprovalStatus}:
                raise GatewayError(
                    422, "validation", "Invalid filter",
                    f"status {status!r} is not one of {', '.join(s.value for s in ApprovalStatus)}",
                )  # fmt: skip
            clauses.append(f"MusterStatus = '{status}'")
        if policy is not None:
            clauses.append(f"MusterPolicy = '{_safe(policy, 'policy')}'")
        if approver is not None:
            clauses.append(f"MusterApprovers = '{_safe(approver, 'approver')}'")
        if decided_by is not None:
            clauses.append(f"MusterDecidedBy = '{_safe(decided_by, 'decided_by')}'")
        if not self.is_admin(caller):
            user = _safe(caller.user, "user")
            clauses.append(
                f"(MusterRequester = '{user}' OR MusterApprovers = '{user}'"
                f" OR MusterDecidedBy = '{user}')"
            )
        query = " AND ".join(clauses)
        found = []
        async for execution in self.client.list_workflows(query, limit=limit):
            attrs = execution.typed_search_attributes
            memo = await execution.memo()
            amount = None
            minor: int | None = attrs.get(sa.AMOUNT_MINOR)
            currency: str | None = attrs.get(sa.CURRENCY)
            if minor is not None and currency:
                amount = Money(amount_minor=minor, currency=currency)
            found.append(
                ApprovalSummary(
                    request_id=attrs.get(sa.BUSINESS_KEY) or execution.id,
                    title=str(memo.get("title", "")),
                    kind=attrs.get(sa.REQUEST_KIND) or "",
                    requester=attrs.get(sa.REQUESTER) or "",
                    policy=attrs.get(sa.POLICY) or "",
                    status=attrs.get(sa.STATUS) or "",
                    amount=amount,
                    waiting_for=list(attrs.get(sa.APPROVERS) or []),
                    started=execution.start_time,
                )
            )
        return found

    async def decide(
        self,
        caller: Caller,
        request_id: str,
        verdict: str,
        reason: str | None,
        via: str = "api",
    ) -> ApprovalState:
        """The caller approves or rejects; the workflow's validator decides if it counts."""
        await self._approval_state(request_id)  # 404 before anything else
        handle: WorkflowHandle[Any, Any] = self.client.get_workflow_handle(
            approval.workflow_id(request_id)
        )
        decision = Decision.model_validate(
            {"approver": caller.user, "verdict": verdict, "reason": reason, "via": via}
        )
        try:
            state: ApprovalState = await handle.execute_update(
                approval.DECIDE_UPDATE, decision, result_type=ApprovalState
            )
        except WorkflowUpdateFailedError as exc:
            kind = getattr(exc.cause, "type", None) or ""
            status, problem, title = REFUSALS.get(kind, (409, "refused", "Decision refused"))
            message = getattr(exc.cause, "message", None) or str(exc.cause)
            raise GatewayError(status, problem, title, message) from None
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            closed = await self._approval_state(request_id)
            if any(d.approver == caller.user and d.verdict == verdict for d in closed.decisions):
                return closed  # a retry of the decision that closed it: idempotent
            raise GatewayError(
                409, "already-decided", "Request already closed",
                f"request {request_id} is {closed.status.value} and takes no more decisions",
            ) from None  # fmt: skip
        return state

    # -- orders ------------------------------------------------------------------------------

    async def place_order(
        self, caller: Caller, order: Order, idempotency_key: str
    ) -> tuple[OrderState, bool]:
        """Start the order's saga; the same key and order again returns the same order."""
        annotate(order_id=order.order_id)
        fingerprint = _fingerprint(order.model_dump(mode="json"))
        workflow_id = fulfillment.workflow_id(order.order_id)
        try:
            await self.client.start_workflow(
                fulfillment.WORKFLOW,
                FulfillmentInput(order=order),
                id=workflow_id,
                task_queue=self.orders_task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=start_attributes(order),
                memo={
                    "placed_by": caller.user,
                    "idempotency_key": idempotency_key,
                    "fingerprint": fingerprint,
                },
            )
            created = True
        except WorkflowAlreadyStartedError:
            memo = await (await self.client.get_workflow_handle(workflow_id).describe()).memo()
            if memo.get("idempotency_key") != idempotency_key:
                raise GatewayError(
                    409, "order-exists", "Order already placed",
                    f"order {order.order_id} was already placed with another Idempotency-Key",
                ) from None  # fmt: skip
            if memo.get("fingerprint") != fingerprint:
                raise GatewayError(
                    422, "idempotency-conflict", "Idempotency-Key reused",
                    f"Idempotency-Key {idempotency_key!r} was already used for a different "
                    f"version of order {order.order_id}",
                ) from None  # fmt: skip
            created = False
        return await self._order_state(caller, order.order_id, check="none"), created

    async def _order_state(
        self, caller: Caller, order_id: str, *, check: Literal["owner", "view", "none"]
    ) -> OrderState:
        handle = self.client.get_workflow_handle(fulfillment.workflow_id(order_id))
        try:
            description = await handle.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise GatewayError(
                    404, "not-found", "No such order", f"no order {order_id!r}"
                ) from None
            raise
        if check != "none":
            memo = await description.memo()
            owner = memo.get("placed_by") == caller.user or self.is_admin(caller)
            if not owner and not (check == "view" and await self._approves_order(caller, order_id)):
                raise GatewayError(
                    403, "forbidden", "Not yours",
                    f"{caller.user} neither placed order {order_id} nor is asked to approve it",
                )  # fmt: skip
        state: OrderState = await handle.query(fulfillment.STATE_QUERY, result_type=OrderState)
        return state

    async def get_order(self, caller: Caller, order_id: str) -> OrderState:
        """An order, for whoever placed it, its approvers (or an admin)."""
        return await self._order_state(caller, order_id, check="view")

    async def _approves_order(self, caller: Caller, order_id: str) -> bool:
        try:
            state = await self._approval_state(approval_request_id(order_id))
        except GatewayError:
            return False  # the order never needed an approval
        return caller.user in set(state.approvers) | {d.approver for d in state.decisions}

    async def cancel_order(self, caller: Caller, order_id: str) -> OrderState:
        """Ask the saga to cancel (it compensates unless already shipped)."""
        state = await self._order_state(caller, order_id, check="owner")
        handle = self.client.get_workflow_handle(fulfillment.workflow_id(order_id))
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            raise GatewayError(
                409, "order-closed", "Order already finished",
                f"order {order_id} is {state.status.value}; nothing to cancel",
            )  # fmt: skip
        await handle.cancel()
        return state

    async def resolve_order(self, caller: Caller, order_id: str, body: ResolveInput) -> OrderState:
        """An admin resolves an order that needs attention."""
        if not self.is_admin(caller):
            raise GatewayError(
                403, "forbidden", "Admins only",
                f"resolving orders is for members of {self.admin_group!r}",
            )  # fmt: skip
        await self._order_state(caller, order_id, check="none")
        handle = self.client.get_workflow_handle(fulfillment.workflow_id(order_id))
        resolution = body.model_copy(update={"operator": caller.user})
        try:
            state: OrderState = await handle.execute_update(
                fulfillment.RESOLVE_UPDATE, resolution, result_type=OrderState
            )
        except WorkflowUpdateFailedError as exc:
            raise GatewayError(
                409, "refused", "Resolution refused", getattr(exc.cause, "message", str(exc))
            ) from None
        return state
