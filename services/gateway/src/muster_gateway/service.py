"""What the gateway does, over Temporal: approvals and orders, with authorization.

Both the JSON API and the approver page call these; every refusal is a
:class:`GatewayError` that the HTTP layer renders as ``application/problem+json``, and
every Temporal error becomes one through :func:`muster_gateway.problems.from_temporal`.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import TemporalError, WorkflowAlreadyStartedError
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
from muster_api.common import ONE_LINE_PATTERN, FreeText, Money, OneLine, text_problems
from muster_api.fulfillment import (
    FulfillmentInput,
    Order,
    OrderState,
    OrderStatus,
    ResolveInput,
    approval_request_id,
    start_attributes,
)
from muster_gateway.auth import Caller
from muster_gateway.idempotency import IdempotencyKeys, fingerprint
from muster_gateway.problems import GatewayError, from_temporal, shown
from muster_gateway.tracing import annotate
from muster_runtime.policies import Directory

__all__ = [
    "ApprovalSummary",
    "DecisionBody",
    "Gateway",
    "GatewayError",
    "NewApproval",
    "RejectBody",
    "Started",
    "require_clean_text",
    "start_failed",
]

log = logging.getLogger(__name__)

_SAFE = re.compile(r"^[A-Za-z0-9._@:+-]{1,256}$")
# What an approval request's or an order's id can look like (request ids are req-<hex> or
# order-<order id>); anything else cannot exist, and Temporal is not asked.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,139}$")


def _one_line_map(schema: dict[str, Any]) -> None:
    """JSON Schema of a map of one-line names to one-line values."""
    schema.pop("patternProperties", None)
    schema["additionalProperties"] = {"type": "string", "pattern": ONE_LINE_PATTERN}
    schema["propertyNames"] = {"pattern": ONE_LINE_PATTERN}


class NewApproval(BaseModel):
    """What a requester asks to approve. The request id is the gateway's to choose (from
    the Idempotency-Key, or at random): callers never name it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    kind: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9-]*$")
    title: OneLine = Field(min_length=1, max_length=200, description="one line, no control chars")
    description: FreeText = Field(
        default="", max_length=4000, description="line breaks allowed, no other control chars"
    )
    amount: Money | None = None
    policy: str | None = Field(
        default=None,
        max_length=253,
        pattern=sa.POLICY_NAME,
        description="an ApprovalPolicy name; default: the one policy that applies",
    )
    context: dict[OneLine, OneLine] = Field(
        default_factory=dict,
        max_length=50,
        description="shown to approvers: names and values, each one line",
        json_schema_extra=_one_line_map,
    )


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
    """An approval from the caller, with an optional reason."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: FreeText | None = Field(default=None, max_length=2000)


class RejectBody(BaseModel):
    """A rejection from the caller: a reject needs a reason."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: FreeText = Field(
        min_length=1, max_length=2000, description="why (required: a reject needs a reason)"
    )

    @model_validator(mode="before")
    @classmethod
    def _has_reason(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("reason") is None:
            raise ValueError('a rejection needs a reason: send {"reason": "why"}')
        return data

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a rejection needs a reason, not blank space")
        return value


def require_clean_text(model: BaseModel, where: str = "body") -> None:
    """Refuse (422) text that breaks its field's rule: control characters in one-line
    fields, or anything but line breaks and tabs in free text."""
    problems = text_problems(model)
    if not problems:
        return
    errors = [
        {
            "where": ".".join([where, *(shown(str(p), 40).strip("'") for p in loc)]),
            "problem": problem,
        }
        for loc, problem in problems
    ]
    raise GatewayError(
        422,
        "validation",
        "Invalid request",
        "; ".join(f"{e['where']}: {e['problem']}" for e in errors),
        errors=errors,
    )


def _safe(value: str, what: str) -> str:
    if not _SAFE.match(value):
        raise GatewayError(
            422,
            "validation",
            "Invalid filter",
            f"{what} {shown(value)} is not valid: use letters, digits and ._@:+- only",
        )
    return value


S = TypeVar("S", ApprovalState, OrderState)


@dataclass(frozen=True)
class Started(Generic[S]):
    """What a start answered: the id it started (or a key's replay found), ``created`` when
    this call started it, and its state, or ``None`` when the state could not be read in
    time. The workflow runs either way: the state is for the answer only."""

    id: str
    created: bool
    state: S | None


def start_failed(error: TemporalError, subject: str, key: str | None) -> GatewayError:
    """The refusal a failed start means; a 503 says whether a retry is safe. Its outcome may
    be unknown (a timeout): the workflow may have started after all."""
    refusal = from_temporal(error, subject)
    if refusal.status == 503:
        refusal.detail += (
            "; retrying with the same Idempotency-Key and body is safe: it never starts a "
            "second one"
            if key is not None
            else "; the request may have started: retry with an Idempotency-Key next time, so "
            "that a retry cannot start a second one"
        )
    return refusal


def _missing(what: str, value: str) -> GatewayError:
    return GatewayError(404, "not-found", "Not found", f"no {what} {shown(value)}")


@dataclass
class Gateway:
    """The operations, bound to a Temporal client and the people and policies files."""

    client: Client
    policies: Callable[[], dict[str, PolicySnapshot]]
    directory: Callable[[], Directory]
    approvals_task_queue: str
    orders_task_queue: str
    admin_group: str
    keys: IdempotencyKeys | None = None
    state_read_timeout: float = 5.0
    """Seconds a create waits for the started workflow's state (a query the worker answers)
    before it answers 202 Accepted instead."""

    def __post_init__(self) -> None:
        if self.keys is None:
            self.keys = IdempotencyKeys(self.client)

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
        # The folder's map holds each policy twice (by name and by namespace/name).
        unique = {p.name: p for p in policies.values()}
        known = ", ".join(sorted(unique)) or "none"
        if body.policy is not None:
            chosen = policies.get(body.policy)
            if chosen is None:
                raise GatewayError(
                    422, "unknown-policy", "Unknown policy",
                    f"no ApprovalPolicy named {shown(body.policy)}; known: {known}",
                )  # fmt: skip
            why_not = chosen.applies(body.kind, body.amount)
            if why_not is not None:
                raise GatewayError(422, "policy-does-not-apply", "Policy does not apply", why_not)
            return chosen
        candidates = [p for p in unique.values() if p.applies(body.kind, body.amount) is None]
        if not candidates:
            raise GatewayError(
                422, "no-policy", "No policy applies",
                f"no ApprovalPolicy governs kind {shown(body.kind)}"
                + (f" with amount {body.amount}" if body.amount else "")
                + f"; known: {known}",
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
    ) -> Started[ApprovalState]:
        """Start a request for the caller. With a key, a repeat (same caller, key and body)
        returns the same request; another body is a 422. Once started, it is answered as
        started even when its state cannot be read (``state`` is then ``None``)."""
        require_clean_text(body)
        policy = self.choose_policy(body)
        # A new id each time: a key names its request through its record (whose target
        # is the id), so a key used again after its record expired gets a new request.
        request_id = f"req-{uuid.uuid4().hex[:20]}"
        if idempotency_key is not None:
            assert self.keys is not None
            try:
                claim = await self.keys.claim(
                    "POST /v1/approvals",
                    caller.user,
                    idempotency_key,
                    fingerprint(body.model_dump(mode="json")),
                    request_id,
                )
            except TemporalError as exc:
                raise start_failed(exc, "the new approval request", idempotency_key) from None
            request_id = claim.target
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
                memo={"title": body.title},
            )
            created = True
        except WorkflowAlreadyStartedError:
            # Only a key's record names an id twice: this is the key's request.
            created = False
        except TemporalError as exc:
            raise start_failed(
                exc, f"approval request {shown(request_id)}", idempotency_key
            ) from None
        try:
            state = await self._approval_state(request_id, rpc_timeout=self.read_timeout)
        except GatewayError as exc:
            log.warning("started approval request %s; its state is unread: %s", request_id, exc)
            return Started(request_id, created, None)
        return Started(request_id, created, state)

    @property
    def read_timeout(self) -> timedelta:
        """How long one state read may wait where a slow answer must not hold up more than
        itself: the read-back after a create, each row of an approver's inbox."""
        return timedelta(seconds=self.state_read_timeout)

    async def _approval_state(
        self, request_id: str, rpc_timeout: timedelta | None = None
    ) -> ApprovalState:
        if not _ID.match(request_id):
            raise _missing("approval request", request_id)
        handle = self.client.get_workflow_handle(approval.workflow_id(request_id))
        try:
            state: ApprovalState = await handle.query(
                approval.STATE_QUERY, result_type=ApprovalState, rpc_timeout=rpc_timeout
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise _missing("approval request", request_id) from None
            raise from_temporal(exc, f"approval request {shown(request_id)}") from None
        except TemporalError as exc:
            raise from_temporal(exc, f"approval request {shown(request_id)}") from None
        return state

    def _may_see(self, caller: Caller, state: ApprovalState) -> bool:
        involved = (
            {state.request.requester} | set(state.approvers) | {d.approver for d in state.decisions}
        )
        return caller.user in involved or self.is_admin(caller)

    async def get_approval(
        self, caller: Caller, request_id: str, rpc_timeout: timedelta | None = None
    ) -> ApprovalState:
        """A request, if the caller is involved in it (or an admin). ``rpc_timeout`` bounds
        the read (a query waits for a worker up to Temporal's own limit otherwise); past it,
        a 503 that says Temporal did not answer in time."""
        state = await self._approval_state(request_id, rpc_timeout=rpc_timeout)
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
                    f"status {shown(status)} is not one of "
                    f"{', '.join(s.value for s in ApprovalStatus)}",
                )  # fmt: skip
            clauses.append(f"MusterStatus = '{status}'")
        if policy is not None:
            clauses.append(f"MusterPolicy = '{_safe(policy, 'policy')}'")
        if approver is not None:
            clauses.append(f"MusterApprovers = '{_safe(approver, 'approver')}'")
        if decided_by is not None:
            clauses.append(f"MusterDecidedBy = '{_safe(decided_by, 'decided_by')}'")
        # A caller's own inbox (approver=me) or decisions (decided_by=me) hold only requests
        # they are in: repeating that as the involvement clause nearly doubled the dev
        # server's time for an inbox of 100,000 (p50 148 ms against 81 ms without).
        if not self.is_admin(caller) and caller.user not in {approver, decided_by}:
            user = _safe(caller.user, "user")
            clauses.append(
                f"(MusterRequester = '{user}' OR MusterApprovers = '{user}'"
                f" OR MusterDecidedBy = '{user}')"
            )
        query = " AND ".join(clauses)
        found = []
        # One page of just what is shown: the SDK's default page is 1,000 executions, which
        # the server reads (and the gateway decodes) however few are wanted.
        async for execution in self.client.list_workflows(query, limit=limit, page_size=limit):
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
        require_clean_text(decision)
        try:
            state: ApprovalState = await handle.execute_update(
                approval.DECIDE_UPDATE, decision, result_type=ApprovalState
            )
        except WorkflowUpdateFailedError as exc:
            raise from_temporal(exc, f"approval request {shown(request_id)}") from None
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise from_temporal(exc, f"approval request {shown(request_id)}") from None
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
    ) -> Started[OrderState]:
        """Start the order's saga. The same caller, key and order again returns the same
        order; another order under the key is a 422. Once started, it is answered as started
        even when its state cannot be read (``state`` is then ``None``)."""
        require_clean_text(order)
        annotate(order_id=order.order_id)
        assert self.keys is not None
        workflow_id = fulfillment.workflow_id(order.order_id)
        record_id = IdempotencyKeys.record_id("POST /v1/orders", caller.user, idempotency_key)
        # An order placed by another request is refused before this key is claimed, so the
        # refusal leaves nothing behind (two first placements racing may leave a key record).
        subject = f"order {shown(order.order_id)}"
        try:
            await self._refuse_foreign_order(workflow_id, record_id, caller, idempotency_key)
            claim = await self.keys.claim(
                "POST /v1/orders", caller.user, idempotency_key,
                fingerprint(order.model_dump(mode="json")), order.order_id,
            )  # fmt: skip
        except TemporalError as exc:
            raise start_failed(exc, subject, idempotency_key) from None
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
                    "idempotency_record": claim.record_id,
                },
            )
            created = True
        except WorkflowAlreadyStartedError:
            created = False
        except TemporalError as exc:
            raise start_failed(exc, subject, idempotency_key) from None
        if not created:
            await self._refuse_foreign_order(workflow_id, claim.record_id, caller, idempotency_key)
        try:
            state = await self._order_state(
                caller, order.order_id, check="none", rpc_timeout=self.read_timeout
            )
        except GatewayError as exc:
            log.warning("started order %s; its state is unread: %s", order.order_id, exc)
            return Started(order.order_id, created, None)
        return Started(order.order_id, created, state)

    async def _refuse_foreign_order(
        self, workflow_id: str, record_id: str, caller: Caller, key: str
    ) -> None:
        """409 when the order exists and was placed by another request than this key's."""
        try:
            description = await self.client.get_workflow_handle(workflow_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return
            raise from_temporal(exc, f"order {shown(workflow_id)}") from None
        memo = await description.memo()
        ours = memo.get("idempotency_record") == record_id or (
            # placed before key records existed: the key and the caller match
            "idempotency_record" not in memo
            and memo.get("idempotency_key") == key
            and memo.get("placed_by") == caller.user
        )
        if not ours:
            order_id = workflow_id.removeprefix("order-")
            raise GatewayError(
                409, "order-exists", "Order already placed",
                f"order {order_id} was already placed by another request; an order id is "
                "placed once",
            )  # fmt: skip

    async def _order_state(
        self,
        caller: Caller,
        order_id: str,
        *,
        check: Literal["owner", "view", "none"],
        rpc_timeout: timedelta | None = None,
    ) -> OrderState:
        if not _ID.match(order_id):
            raise _missing("order", order_id)
        subject = f"order {shown(order_id)}"
        handle = self.client.get_workflow_handle(fulfillment.workflow_id(order_id))
        try:
            description = await handle.describe(rpc_timeout=rpc_timeout)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise _missing("order", order_id) from None
            raise from_temporal(exc, subject) from None
        except TemporalError as exc:
            raise from_temporal(exc, subject) from None
        if check != "none":
            memo = await description.memo()
            owner = memo.get("placed_by") == caller.user or self.is_admin(caller)
            if not owner and not (check == "view" and await self._approves_order(caller, order_id)):
                raise GatewayError(
                    403, "forbidden", "Not yours",
                    f"{caller.user} neither placed order {order_id} nor is asked to approve it",
                )  # fmt: skip
        try:
            state: OrderState = await handle.query(
                fulfillment.STATE_QUERY, result_type=OrderState, rpc_timeout=rpc_timeout
            )
        except TemporalError as exc:
            raise from_temporal(exc, subject) from None
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

    async def _running(
        self, order_id: str, state: OrderState, doing: str
    ) -> WorkflowHandle[Any, Any]:
        handle = self.client.get_workflow_handle(fulfillment.workflow_id(order_id))
        try:
            description = await handle.describe()
        except TemporalError as exc:
            raise from_temporal(exc, f"order {shown(order_id)}") from None
        if description.status != WorkflowExecutionStatus.RUNNING:
            raise GatewayError(
                409, "order-closed", "Order already finished",
                f"order {order_id} is {state.status.value}; {doing}",
            )  # fmt: skip
        return handle

    async def cancel_order(self, caller: Caller, order_id: str) -> OrderState:
        """Ask the saga to cancel (it compensates unless already shipped)."""
        state = await self._order_state(caller, order_id, check="owner")
        handle = await self._running(order_id, state, "nothing to cancel")
        try:
            await handle.cancel()
        except TemporalError as exc:
            raise from_temporal(exc, f"order {shown(order_id)}") from None
        return state

    async def resolve_order(self, caller: Caller, order_id: str, body: ResolveInput) -> OrderState:
        """An admin resolves an order that needs attention."""
        if not self.is_admin(caller):
            raise GatewayError(
                403, "forbidden", "Admins only",
                f"resolving orders is for members of {self.admin_group!r}",
            )  # fmt: skip
        resolution = body.model_copy(update={"operator": caller.user})
        require_clean_text(resolution)
        state = await self._order_state(caller, order_id, check="none")
        handle = await self._running(
            order_id, state, "only an order that needs attention can be resolved"
        )
        if state.status != OrderStatus.NEEDS_ATTENTION:
            raise GatewayError(
                409, "not-resolvable", "Order cannot be resolved now",
                f"order {order_id} is {state.status.value}; only an order that needs attention "
                "can be resolved",
            )  # fmt: skip
        try:
            resolved: OrderState = await handle.execute_update(
                fulfillment.RESOLVE_UPDATE, resolution, result_type=OrderState
            )
        except TemporalError as exc:
            raise from_temporal(exc, f"order {shown(order_id)}") from None
        return resolved
