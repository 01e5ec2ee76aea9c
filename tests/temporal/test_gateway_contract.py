"""The gateway's API keeps its contract: schemathesis generates requests from
``/openapi.json`` and runs every check against the live gateway (and the reference
backends) on the session's dev server, with the real workers behind it.

Checks: no server error, status-code conformance (every status answered is documented),
content-type and response-schema conformance, response headers, positive data accepted,
negative data rejected, missing headers, ignored auth, unsupported methods (405 with
``Allow``). Phases: examples, coverage (boundary and invalid values), fuzzing; seeded and
deterministic, with a bounded number of examples, as the demo admin ``carol``.

Two settings, and why: schema-valid bodies may still be refused with 422 where the API
refuses what the schema cannot say (no policy governs a random kind; items in two
currencies), so positive-data acceptance also expects 422; and the stateful phase is off,
as ``DELETE /v1/orders/{id}`` cancels an order (which then still exists, compensated),
where the stateful checks assume a DELETE removes the resource, and every chained
``POST /v1/orders`` would run a real saga.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.engine import events, from_schema

from tests.platform_support import TOKENS, Platform, platform

pytestmark = [
    pytest.mark.timeout(600),
    # Hypothesis warns about its own costs (a large repr); the suite's "warnings are
    # errors" would turn that into a schemathesis error about the API.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning"),
]

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "positive_data_acceptance",
    "negative_data_rejection",
    "missing_required_header",
    "ignored_auth",
    "unsupported_method",
]
"""Every stateless check schemathesis has (the stateful ones need the stateful phase)."""


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, temporal_env: dict[str, str]
) -> Iterator[Platform]:
    with platform(tmp_path_factory.mktemp("contract"), temporal_env) as started:
        yield started


def config(base_url: str, token: str | None, max_examples: int) -> schemathesis.Config:
    """A seeded, bounded run with every stateless check."""
    generation = {"max-examples": max_examples, "deterministic": True, "mode": "all"}
    checks: dict[str, Any] = {name: {"enabled": True} for name in CHECKS}
    checks["positive_data_acceptance"] = {
        "enabled": True,
        "expected-statuses": ["2xx", "401", "403", "404", "409", "422"],
    }
    return schemathesis.Config.from_dict({
        "seed": 1717,
        "base-url": base_url,
        "headers": {"Authorization": f"Bearer {token}"} if token else {},
        "checks": {"enabled": False, **checks},
        "generation": generation,
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True, "generation": generation},
            "stateful": {"enabled": False},
        },
        "continue-on-failure": True,
        "request-timeout": 30,
        "warnings": False,
    })  # fmt: skip


def run(base_url: str, token: str | None, max_examples: int) -> tuple[int, list[str]]:
    """Cases sent and the failures found (each as 'operation: check: message')."""
    schema = schemathesis.openapi.from_url(
        f"{base_url}/openapi.json", config=config(base_url, token, max_examples)
    )
    cases = 0
    failures: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            cases += len(recorder.interactions)
            for checks in recorder.checks.values():
                failures += [
                    f"{recorder.label}: {check.name}: {check.failure_info.failure.title}"
                    f" {check.failure_info.failure.message}"
                    for check in checks
                    if check.failure_info is not None
                ]
        elif isinstance(event, events.NonFatalError | events.FatalError):
            failures.append(f"error: {getattr(event, 'label', '')} {event!r}"[:2000])
    return cases, sorted(set(failures))


def test_the_gateway_keeps_its_contract(running: Platform) -> None:
    cases, failures = run(running.gateway, TOKENS["carol"], max_examples=25)
    print(f"schemathesis sent {cases} cases to the gateway")
    assert not failures, "\n".join(failures[:40])
    assert cases >= 300, f"only {cases} cases"


def test_the_backends_keep_their_contract(running: Platform) -> None:
    """The reference backends' API too (no faults are injected: their 503 is documented)."""
    cases, failures = run(running.backends.api, None, max_examples=10)
    print(f"schemathesis sent {cases} cases to the backends")
    assert not failures, "\n".join(failures[:40])
    assert cases >= 100, f"only {cases} cases"


def test_the_document_says_what_a_client_needs(running: Platform) -> None:
    spec = httpx.get(f"{running.gateway}/openapi.json", timeout=10).json()
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail"} <= set(problem["required"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    money = spec["components"]["schemas"]["Money"]["properties"]
    assert money["currency"]["pattern"] == "^[A-Z]{3}$"
    assert money["amount_minor"]["type"] == "integer"
    reject = spec["paths"]["/v1/approvals/{request_id}/reject"]["post"]
    assert reject["requestBody"]["required"] is True
    assert "reason" in spec["components"]["schemas"]["RejectBody"]["required"]
    assert "needs a reason" in reject["description"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert {"401", "503"} <= statuses, (method, path)
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(response["content"]) == ["application/problem+json"]
            assert operation["security"] == [{"HTTPBearer": []}], (method, path)
