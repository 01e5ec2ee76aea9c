"""What bench_gateway counts as a start, and how fast: a ``202 Accepted`` (the request
started, its state not read in time) is a start, and its latency counts."""

from __future__ import annotations

import httpx

from bench.bench_gateway import Calls


def test_a_202_is_a_start_whose_latency_counts_and_a_5xx_is_a_failure() -> None:
    calls = Calls()
    calls.answered(httpx.Response(201, json={"status": "pending"}), 40.0)
    calls.answered(httpx.Response(202, headers={"Location": "/v1/approvals/x"}), 5100.0)
    calls.answered(httpx.Response(503, json={"title": "Temporal unavailable"}), 30.0)
    calls.answered(httpx.Response(400, json={"title": "bad"}), 5.0)
    assert calls.latencies == [40.0, 5100.0]
    assert calls.accepted == 1
    assert calls.failures == {503: 1, 400: 1}
    assert calls.errors_5xx == 1
    assert calls.sample.startswith("503: ")
