"""The ``OrderFulfillment`` workflow: reserve, (approve,) charge, ship, confirm — or undo.

Deterministic code only: no I/O, no settings, no wall clock. Each step's compensation is
registered with the saga before the step runs; business failures compensate at once,
transient ones are retried first; a compensation that keeps failing parks the order in
``needs_attention`` until a person resolves it through the ``resolve`` update.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate, VersioningBehavior
from temporalio.exceptions import ApplicationError, FailureError, is_cancelled_exception
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from muster_api import approval as approval_api
    from muster_api import search_attributes as sa
    from muster_api.approval import ApprovalRequest, ApprovalResult
    from muster_api.fulfillment import (
        WORKFLOW,
        AttentionInfo,
        FulfillmentInput,
        OrderResult,
        OrderState,
        OrderStatus,
        Outcome,
        Phase,
        ResolveInput,
        StepRecord,
        approval_request_id,
    )
    from muster_fulfillment.activities import (
        APPROVAL_REQUIRED,
        BUSINESS_FAILURES,
        ChargeInput,
        ChargeResult,
        FulfillmentActivities,
        NoticeInput,
        ReserveInput,
        ReserveResult,
        ShipInput,
        ShipResult,
        UndoInput,
    )
    from muster_fulfillment.models import ApprovalRequirement
    from muster_fulfillment.saga import CompensationOutcome, Saga, run_shielded
    from muster_runtime.versioning import declare

ENDED = {OrderStatus.FULFILLED, OrderStatus.COMPENSATED, OrderStatus.RESOLVED}

APPROVAL_WORDS_PATCH = "approval-outcome-in-words"
"""The approval step's record says "approved by alice", not "approved by ['alice']"."""

# MusterStatus values in visibility; every other status shows as "in_progress".
VISIBLE_STATUS = {
    OrderStatus.AWAITING_APPROVAL: "awaiting_approval",
    OrderStatus.COMPENSATING: "compensating",
    OrderStatus.NEEDS_ATTENTION: "needs_attention",
    OrderStatus.FULFILLED: "fulfilled",
    OrderStatus.COMPENSATED: "compensated",
    OrderStatus.RESOLVED: "resolved",
}


@declare(
    VersioningBehavior.PINNED,
    "an order runs for seconds to minutes and is one of many: it finishes on the build it "
    "started on, so a new build may change the saga freely. An order that waits for an "
    "approval keeps its build up while it waits (the rollout drains it, or moves it).",
)
@workflow.defn(name=WORKFLOW)
class OrderFulfillment:
    """One order, start to end."""

    @workflow.init
    def __init__(self, request: FulfillmentInput) -> None:
        self.order = request.order
        self.options = request.options
        self.status = OrderStatus.RECEIVED
        self.steps: list[StepRecord] = []
        self.failure: str | None = None
        self.attention: AttentionInfo | None = None
        self.resolution: ResolveInput | None = None
        self.resolution_note: str | None = None
        self.reservation_id: str | None = None
        self.charge_id: str | None = None
        self.shipment_id: str | None = None
        self.tracking_number: str | None = None
        self.approval: str | None = None
        meter = workflow.metric_meter()
        self._completed = meter.create_counter(
            "muster_orders_completed", "Orders that reached an end state, by outcome"
        )
        self._compensations = meter.create_counter(
            "muster_order_compensations", "Compensations run, by step and outcome"
        )
        self._attention_events = meter.create_counter(
            "muster_order_attention_events", "Times an order was parked for a person"
        )
        # A starter that set the search attributes (start_attributes) saves the first upsert.
        self._visible_status: str | None = "in_progress" if _started_with_attributes() else None

    # -- queries and updates ---------------------------------------------------------------

    @workflow.query
    def state(self) -> OrderState:
        """Where the order is, with its whole step history."""
        return OrderState(
            order_id=self.order.order_id,
            status=self.status,
            total=self.order.total,
            steps=list(self.steps),
            failure=self.failure,
            attention=self.attention,
            reservation_id=self.reservation_id,
            charge_id=self.charge_id,
            shipment_id=self.shipment_id,
            tracking_number=self.tracking_number,
            approval=self.approval,
            resolution_note=self.resolution_note,
        )

    @workflow.update
    async def resolve(self, request: ResolveInput) -> OrderState:
        """A person resolves an order that needs attention: retry what is owed, or close it."""
        self.resolution = request
        await workflow.wait_condition(lambda: self.resolution is None)
        return self.state()

    @resolve.validator
    def _validate_resolve(self, request: ResolveInput) -> None:
        # A refusal is an answer, not a transient fault: non-retryable. It leaves no history.
        if self.status != OrderStatus.NEEDS_ATTENTION or self.resolution is not None:
            raise ApplicationError(
                f"order {self.order.order_id} is {self.status.value}; only an order that "
                "needs attention can be resolved",
                type="NotResolvable",
                non_retryable=True,
            )
        if request.action == "mark_resolved" and len(request.note.strip()) < 3:
            raise ApplicationError(
                "mark_resolved needs a note saying what was done by hand (at least 3 characters)",
                type="NoteRequired",
                non_retryable=True,
            )

    # -- the saga --------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: FulfillmentInput) -> OrderResult:
        self._set_status(OrderStatus.RECEIVED)
        saga = Saga(parallel=self.options.parallel_compensation, on_event=self._undo_event)
        try:
            await self._forward(saga)
        except (asyncio.CancelledError, FailureError) as error:
            # A cancellation arrives as CancelledError, or wrapped in the error of the activity
            # or child it interrupted. Before shipping it undoes everything (after shipping the
            # rest of the order is shielded from it).
            reason = "cancelled on request" if is_cancelled_exception(error) else _reason(error)
            await run_shielded(self._compensate(saga, reason))
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._completed.add(1, {"outcome": self.status.value})
        return OrderResult(
            order_id=self.order.order_id,
            status=self.status,
            total=self.order.total,
            failure=self.failure,
            charge_id=self.charge_id,
            shipment_id=self.shipment_id,
            tracking_number=self.tracking_number,
            resolution_note=self.resolution_note,
            steps=list(self.steps),
        )

    async def _forward(self, saga: Saga) -> None:
        order_id = self.order.order_id
        self._set_status(OrderStatus.RESERVING)
        saga.add("reserve", self._undo("reserve", FulfillmentActivities.release_inventory))
        reserved: ReserveResult = await self._step(
            "reserve",
            FulfillmentActivities.reserve_inventory,
            ReserveInput(
                order_id=order_id, items=self.order.items, idempotency_key=f"{order_id}-reserve"
            ),
        )
        self.reservation_id = reserved.reservation_id

        self._set_status(OrderStatus.CHARGING)
        saga.add("charge", self._undo("charge", FulfillmentActivities.refund_payment))
        charged = await self._charge()
        self.charge_id = charged.charge_id

        self._set_status(OrderStatus.SHIPPING)
        saga.add("ship", self._undo("ship", FulfillmentActivities.cancel_shipment))
        shipped: ShipResult = await self._step(
            "ship",
            FulfillmentActivities.create_shipment,
            ShipInput(
                order_id=order_id,
                address=self.order.shipping_address,
                items=self.order.items,
                idempotency_key=f"{order_id}-ship",
            ),
        )
        self.shipment_id = shipped.shipment_id
        self.tracking_number = shipped.tracking_number

        # The parcel is on its way: from here on a cancellation changes nothing.
        self._set_status(OrderStatus.CONFIRMING)
        _, cancelled = await run_shielded(self._confirm())
        if cancelled:
            self._record("cancel", "do", "skipped", "cancellation arrived after shipping")
        self._set_status(OrderStatus.FULFILLED)

    async def _confirm(self) -> None:
        notice = NoticeInput(
            order_id=self.order.order_id,
            email=self.order.customer_email,
            template="order_confirmed",
            idempotency_key=f"{self.order.order_id}-confirm",
            tracking_number=self.tracking_number,
        )
        try:
            await self._step("confirm", FulfillmentActivities.send_notification, notice)
        except FailureError:
            # The goods are paid for and shipped; a lost e-mail does not undo the order.
            workflow.logger.warning("confirmation for %s could not be sent", self.order.order_id)

    async def _charge(self, approval: str | None = None) -> ChargeResult:
        """Charge the total; a charge the payment step refuses without approval waits for one.

        The charge's compensation stays registered across the wait: if the approval is
        rejected, the refund voids the charge key, so no charge can land under it later.
        """
        order_id = self.order.order_id
        request = ChargeInput(
            order_id=order_id,
            amount=self.order.total,
            payment_token=self.order.payment_token,
            idempotency_key=f"{order_id}-charge",
            approval=approval,
        )
        try:
            charged: ChargeResult = await self._step(
                "charge", FulfillmentActivities.charge_payment, request
            )
            return charged
        except FailureError as error:
            requirement = _approval_requirement(error)
            if requirement is None or approval is not None:
                raise
        self._set_status(OrderStatus.AWAITING_APPROVAL)
        granted = await self._approval(requirement.policy)
        self._set_status(OrderStatus.CHARGING)
        return await self._charge(granted)

    async def _approval(self, policy: str) -> str:
        """Ask for the order's approval under ``policy``; the approval request's id, if granted."""
        order = self.order
        request_id = approval_request_id(order.order_id)
        self._record("approval", "do", "started", f"policy {policy}")
        result: ApprovalResult = await workflow.execute_child_workflow(
            approval_api.WORKFLOW,
            ApprovalRequest(
                request_id=request_id,
                kind="order",
                requester=order.customer_id,
                title=f"Order {order.order_id} for {order.total}",
                amount=order.total,
                policy=policy,
                subject=order.order_id,
                context={"items": str(len(order.items)), "country": order.shipping_address.country},
            ),
            id=approval_api.workflow_id(request_id),
            task_queue=self.options.approval_task_queue,
            result_type=ApprovalResult,
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
        )
        self.approval = result.status
        if workflow.patched(APPROVAL_WORDS_PATCH):
            outcome = result.status.replace("_", " ")
            by = f" by {', '.join(result.decided_by)}" if result.decided_by else ""
            failed = outcome + (f": {result.reason}" if result.reason else "")
            granted = outcome + by
        else:
            failed = f"{result.status}: {result.reason or ''}"
            granted = f"{result.status} by {result.decided_by}"
        if not result.approved:
            self._record("approval", "do", "failed", failed)
            raise ApplicationError(
                f"approval {result.status}" + (f": {result.reason}" if result.reason else ""),
                type="ApprovalRejected",
                non_retryable=True,
            )
        self._record("approval", "do", "succeeded", granted)
        return request_id

    async def _compensate(self, saga: Saga, reason: str) -> None:
        self.failure = reason
        self._set_status(OrderStatus.COMPENSATING)
        report = await saga.compensate()
        while not report.complete:
            self.attention = AttentionInfo(
                reason=reason, failed_compensations=list(report.failed), since=workflow.now()
            )
            self._set_status(OrderStatus.NEEDS_ATTENTION)
            self._attention_events.add(1)
            await workflow.wait_condition(lambda: self.resolution is not None)
            assert self.resolution is not None
            resolution, self.resolution = self.resolution, None
            self._record(
                "resolve", "undo", "started", f"{resolution.action} by {resolution.operator}"
            )
            if resolution.action == "mark_resolved":
                self.resolution_note = f"{resolution.operator}: {resolution.note}"
                self.attention = None
                self._set_status(OrderStatus.RESOLVED)
                return
            self.attention = None
            self._set_status(OrderStatus.COMPENSATING)
            report = await saga.compensate()
        self._set_status(OrderStatus.COMPENSATED)
        notice = NoticeInput(
            order_id=self.order.order_id,
            email=self.order.customer_email,
            template="order_failed",
            idempotency_key=f"{self.order.order_id}-failure-notice",
            reason=reason,
        )
        try:
            await self._step("failure-notice", FulfillmentActivities.send_notification, notice)
        except FailureError:
            workflow.logger.warning("failure notice for %s not sent", self.order.order_id)

    # -- helpers ---------------------------------------------------------------------------

    async def _step(self, name: str, method: Any, argument: Any) -> Any:
        self._record(name, "do", "started")
        try:
            result = await workflow.execute_activity_method(
                method,
                argument,
                start_to_close_timeout=timedelta(seconds=self.options.step_timeout_seconds),
                retry_policy=self._forward_retry(),
            )
        except FailureError as error:
            # A charge refused for want of an approval is not a failure: it waits for one.
            waits = _approval_requirement(error) is not None
            self._record(name, "do", "skipped" if waits else "failed", _reason(error))
            raise
        self._record(name, "do", "succeeded")
        return result

    def _undo(self, step: str, method: Any) -> Any:
        order_id = self.order.order_id

        async def undo() -> object:
            result: object = await workflow.execute_activity_method(
                method,
                UndoInput(
                    order_id=order_id,
                    idempotency_key=f"{order_id}-{step}-undo",
                    step_key=f"{order_id}-{step}",
                ),
                start_to_close_timeout=timedelta(seconds=self.options.step_timeout_seconds),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=self.options.retry_initial_seconds),
                    maximum_interval=timedelta(seconds=self.options.retry_max_interval_seconds),
                    maximum_attempts=self.options.compensation_max_attempts,
                ),
            )
            return result

        return undo

    def _forward_retry(self) -> RetryPolicy:
        return RetryPolicy(
            initial_interval=timedelta(seconds=self.options.retry_initial_seconds),
            maximum_interval=timedelta(seconds=self.options.retry_max_interval_seconds),
            maximum_attempts=self.options.step_max_attempts,
            non_retryable_error_types=[*BUSINESS_FAILURES.values(), "BackendRejected"],
        )

    def _undo_event(self, step: str, outcome: CompensationOutcome, detail: str) -> None:
        if outcome != "started":
            self._compensations.add(1, {"step": step, "outcome": outcome})
        self._record(step, "undo", outcome, detail)

    def _record(self, step: str, phase: Phase, outcome: Outcome, detail: str = "") -> None:
        # Built from trusted values on a hot path: no validation needed.
        self.steps.append(
            StepRecord.model_construct(
                step=step, phase=phase, outcome=outcome, at=workflow.now(), detail=detail
            )
        )

    def _set_status(self, status: OrderStatus) -> None:
        self.status = status
        # Visibility gets the coarse status (every upsert is a write on the server); the
        # step-by-step one is in the `state` query.
        visible = VISIBLE_STATUS.get(status, "in_progress")
        if visible == self._visible_status:
            return
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.STATUS.value_set(visible),
            sa.NEEDS_ATTENTION.value_set(status == OrderStatus.NEEDS_ATTENTION),
        ]
        if self._visible_status is None:
            order = self.order
            total = order.total
            updates += [
                sa.PATTERN.value_set("fulfillment"),
                sa.BUSINESS_KEY.value_set(order.order_id),
                sa.REQUESTER.value_set(order.customer_id),
                sa.AMOUNT_MINOR.value_set(total.amount_minor),
                sa.CURRENCY.value_set(total.currency),
            ]
        self._visible_status = visible
        workflow.upsert_search_attributes(updates)


def _started_with_attributes() -> bool:
    """Whether the starter set the order's search attributes (``start_attributes``)."""
    return workflow.info().typed_search_attributes.get(sa.BUSINESS_KEY) is not None


def _approval_requirement(error: BaseException) -> ApprovalRequirement | None:
    """The approval a step refused to go on without, if that is why it failed."""
    cause = error.__cause__
    if isinstance(cause, ApplicationError) and cause.type == APPROVAL_REQUIRED and cause.details:
        return ApprovalRequirement.model_validate(cause.details[0])
    return None


def _reason(error: BaseException) -> str:
    """The most specific message in an error chain (ActivityError wraps the real cause)."""
    messages: list[str] = []
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, ApplicationError) or not messages:
            messages.append(str(current))
        current = current.__cause__
    return messages[-1] if messages else "failed"
