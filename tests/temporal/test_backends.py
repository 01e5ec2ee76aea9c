"""The reference backends over real HTTP: idempotency (replay, conflict), compensations
that void what never happened, validation with problem+json, ledgers and fault injection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fulfillment_support import BackendsProcess, sku, start_backends


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendsProcess]:
    running = start_backends(tmp_path_factory.mktemp("backends"))
    yield running
    running.process.stop()


def post(backends: BackendsProcess, path: str, body: Any, key: str | None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return httpx.post(backends.api + path, json=body, headers=headers, timeout=10)


def charge_body(order_id: str, amount: int = 1000, token: str = "tok_visa") -> dict[str, Any]:
    return {
        "order_id": order_id,
        "amount": {"amount_minor": amount, "currency": "EUR"},
        "payment_token": token,
    }


def test_same_key_same_request_replays_the_answer(backends: BackendsProcess) -> None:
    first = post(backends, "/payment/charges", charge_body("o-r1"), "o-r1-charge")
    again = post(backends, "/payment/charges", charge_body("o-r1"), "o-r1-charge")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(backends.get("/payment/charges?order_id=o-r1")) == 1


def test_same_key_different_request_is_a_clear_422(backends: BackendsProcess) -> None:
    post(backends, "/payment/charges", charge_body("o-c1", 1000), "o-c1-charge")
    reused = post(backends, "/payment/charges", charge_body("o-c1", 9999), "o-c1-charge")
    assert reused.status_code == 422
    assert reused.headers["content-type"] == "application/problem+json"
    body = reused.json()
    assert body["type"] == "urn:muster:problem:idempotency-conflict"
    assert "already used for a different request" in body["detail"]
    charges = backends.get("/payment/charges?order_id=o-c1")
    assert [c["amount_minor"] for c in charges] == [1000]


def test_business_answers_are_remembered_too(backends: BackendsProcess) -> None:
    declined = post(backends, "/payment/charges", charge_body("o-d1", token="tok_declined"), "k-d1")
    assert declined.status_code == 402
    assert declined.json()["type"] == "urn:muster:problem:card-declined"
    again = post(backends, "/payment/charges", charge_body("o-d1", token="tok_declined"), "k-d1")
    assert again.status_code == 402
    assert again.headers["Idempotent-Replayed"] == "true"


def test_refund_voids_a_charge_that_never_happened(backends: BackendsProcess) -> None:
    refund = post(
        backends, "/payment/refunds", {"order_id": "o-v1", "charge_key": "o-v1-charge"}, "o-v1-u"
    )
    assert refund.status_code == 200
    assert refund.json()["refunded"] is False
    # A charge request that arrives late (a lost, delayed attempt) may not happen any more.
    late = post(backends, "/payment/charges", charge_body("o-v1"), "o-v1-charge")
    assert late.status_code == 409
    assert late.json()["type"] == "urn:muster:problem:compensated"
    assert backends.get("/payment/charges?order_id=o-v1") == []


def test_refund_once_even_with_two_undo_keys(backends: BackendsProcess) -> None:
    post(backends, "/payment/charges", charge_body("o-t1", 500), "o-t1-charge")
    body = {"order_id": "o-t1", "charge_key": "o-t1-charge"}
    first = post(backends, "/payment/refunds", body, "o-t1-undo-a")
    second = post(backends, "/payment/refunds", body, "o-t1-undo-b")
    assert first.json()["refunded"] is True
    assert second.json() == {"refunded": False, "detail": "already refunded"}
    ledger = backends.get("/payment/ledger?order_id=o-t1")
    assert len(ledger["refunds"]) == 1
    assert ledger["charges"][0]["status"] == "refunded"


def test_reservations_are_all_or_nothing_and_moves_are_ledgered(backends: BackendsProcess) -> None:
    plenty, scarce = sku(), sku()
    backends.set_stock(plenty, 10)
    backends.set_stock(scarce, 1)
    items = [{"sku": plenty, "quantity": 3}, {"sku": scarce, "quantity": 2}]
    short = post(
        backends, "/inventory/reservations", {"order_id": "o-s1", "items": items}, "o-s1-r"
    )
    assert short.status_code == 409
    assert short.json()["type"] == "urn:muster:problem:out-of-stock"
    assert f"{scarce} (wanted 2, on hand 1)" in short.json()["detail"]
    assert backends.stock(plenty) == 10  # nothing taken
    ok = post(
        backends, "/inventory/reservations",
        {"order_id": "o-s2", "items": [{"sku": plenty, "quantity": 3}]}, "o-s2-reserve",
    )  # fmt: skip
    assert ok.status_code == 201
    assert backends.stock(plenty) == 7
    released = post(
        backends, "/inventory/reservations/release",
        {"order_id": "o-s2", "reservation_key": "o-s2-reserve"}, "o-s2-reserve-undo",
    )  # fmt: skip
    assert released.json()["released"] is True
    assert backends.stock(plenty) == 10
    moves = backends.get("/inventory/ledger?order_id=o-s2")
    assert [(m["sku"], m["delta"], m["reason"]) for m in moves] == [
        (plenty, -3, "reserve"), (plenty, 3, "release"),
    ]  # fmt: skip


def test_unknown_sku_and_foreign_order(backends: BackendsProcess) -> None:
    unknown = post(
        backends, "/inventory/reservations",
        {"order_id": "o-u1", "items": [{"sku": "NOPE-404", "quantity": 1}]}, "o-u1-r",
    )  # fmt: skip
    assert unknown.status_code == 422
    assert unknown.json()["type"] == "urn:muster:problem:unknown-sku"
    item = sku()
    backends.set_stock(item, 5)
    post(
        backends, "/inventory/reservations",
        {"order_id": "o-f1", "items": [{"sku": item, "quantity": 1}]}, "o-f1-r",
    )  # fmt: skip
    foreign = post(
        backends, "/inventory/reservations/release",
        {"order_id": "o-other", "reservation_key": "o-f1-r"}, "o-f1-undo",
    )  # fmt: skip
    assert foreign.status_code == 422
    assert "belongs to order 'o-f1'" in foreign.json()["detail"]


BAD_REQUESTS = [
    (
        "/payment/charges",
        charge_body("o-x", 10) | {"amount": {"amount_minor": 1.5, "currency": "EUR"}},
        "k1",
        "body.amount.amount_minor",
    ),
    (
        "/payment/charges",
        charge_body("o-x") | {"payment_token": "4111"},
        "k2",
        "body.payment_token",
    ),
    ("/payment/charges", charge_body("o-x") | {"tip": 5}, "k3", "body.tip"),
    ("/payment/charges", charge_body("o-x"), None, "header.Idempotency-Key"),
    ("/shipping/shipments", {"order_id": "o-x", "items": []}, "k4", "body.address"),
]


@pytest.mark.parametrize(("path", "body", "key", "where"), BAD_REQUESTS)
def test_invalid_input_is_a_problem_naming_the_field(
    backends: BackendsProcess, path: str, body: dict[str, Any], key: str | None, where: str
) -> None:
    response = post(backends, path, body, key)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:muster:problem:validation"
    assert where in [e["where"] for e in problem["errors"]]


def test_address_rejected_and_shipment_cancel(backends: BackendsProcess) -> None:
    address = {"name": "A", "line1": "B", "city": "C", "postal_code": "12345", "country": "DE"}
    items = [{"sku": "A-1", "quantity": 1}]
    rejected = post(
        backends, "/shipping/shipments",
        {"order_id": "o-a1", "address": address | {"country": "AQ"}, "items": items}, "o-a1-ship",
    )  # fmt: skip
    assert rejected.status_code == 422
    assert rejected.json()["type"] == "urn:muster:problem:address-rejected"
    booked = post(
        backends, "/shipping/shipments", {"order_id": "o-a2", "address": address, "items": items},
        "o-a2-ship",
    )  # fmt: skip
    assert booked.status_code == 201
    cancelled = post(
        backends, "/shipping/shipments/cancel", {"order_id": "o-a2", "shipment_key": "o-a2-ship"},
        "o-a2-ship-undo",
    )  # fmt: skip
    assert cancelled.json()["cancelled"] is True
    assert backends.get("/shipping/ledger?order_id=o-a2")[0]["status"] == "cancelled"


def test_fault_injection_is_configurable_at_run_time(backends: BackendsProcess) -> None:
    backends.fault("notification", error_rate=1.0)
    try:
        body = {"order_id": "o-n1", "to": "a@b.io", "template": "order_confirmed", "data": {}}
        failed = post(backends, "/notification/messages", body, "o-n1-confirm")
        assert failed.status_code == 503
        assert failed.json()["type"] == "urn:muster:problem:injected-fault"
        assert backends.get("/notification/ledger?order_id=o-n1") == []  # nothing was done
        faults = backends.get("/admin/faults")
        assert faults["notification"]["error_rate"] == 1.0
    finally:
        backends.clear_faults()
    sent = post(backends, "/notification/messages", body, "o-n1-confirm")
    assert sent.status_code == 202
    unknown = httpx.put(backends.api + "/admin/faults/fax", json={}, timeout=10)
    assert unknown.status_code == 404
    assert "no backend 'fax'" in unknown.json()["detail"]
    bad = httpx.put(backends.api + "/admin/faults/payment", json={"error_rate": 2}, timeout=10)
    assert bad.status_code == 422


def test_ledgers_survive_a_restart(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("restart")
    first = start_backends(folder)
    try:
        post(first, "/payment/charges", charge_body("o-p1"), "o-p1-charge")
    finally:
        first.process.stop()
    second = start_backends(folder)
    try:
        assert len(second.get("/payment/charges?order_id=o-p1")) == 1
        again = post(second, "/payment/charges", charge_body("o-p1"), "o-p1-charge")
        assert again.headers["Idempotent-Replayed"] == "true"
    finally:
        second.process.stop()
