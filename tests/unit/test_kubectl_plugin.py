"""``kubectl muster``'s command line: like kubectl, the global flags (``-n``,
``--namespace``, ``--context``, ``--kubeconfig``) work before the verb, after it and after
its arguments, for every verb; ``approvals`` takes the gateway's flags before or after its
own verb; a flag given twice keeps the last. The kube tier runs the verbs for real."""

from __future__ import annotations

from typing import Any

import pytest

from muster_operator.kubectl import parser

WINDOW = ["--start", "2026-01-01T00:00:00Z", "--end", "2026-01-02T00:00:00Z"]
VERBS: dict[str, list[str]] = {
    "trigger": ["trigger", "daily", "--token", "t1", "--timeout", "5"],
    "backfill": ["backfill", "daily", *WINDOW],
    "suspend": ["suspend", "daily"],
    "resume": ["resume", "daily"],
    "describe": ["describe", "daily", "-o", "json"],
    "approvals list": ["approvals", "list", "--status", "pending"],
    "approvals approve": ["approvals", "approve", "r-1", "--reason", "fine"],
    "approvals reject": ["approvals", "reject", "r-1", "--reason", "no"],
}
GLOBAL = [
    ["-n", "team-a"],
    ["--namespace", "team-a"],
    ["--namespace=team-a"],
    ["--context", "kind-muster"],
    ["--kubeconfig", "/tmp/kubeconfig"],
]


def parsed(argv: list[str]) -> dict[str, Any]:
    return {k: v for k, v in vars(parser().parse_args(argv)).items() if k != "func"}


def expected(flag: list[str]) -> dict[str, str]:
    key, _, value = flag[0].lstrip("-").partition("=")
    key = {"n": "namespace"}.get(key, key)
    return {key: value or flag[1]}


@pytest.mark.parametrize("flag", GLOBAL, ids=" ".join)
@pytest.mark.parametrize("verb", list(VERBS))
def test_global_flags_go_anywhere(verb: str, flag: list[str]) -> None:
    args = VERBS[verb]
    depth = 2 if verb.startswith("approvals") else 1
    placements = {
        "before the verb": [*flag, *args],
        "after the verb": [*args[:depth], *flag, *args[depth:]],
        "at the end": [*args, *flag],
    }
    results = {where: parsed(argv) for where, argv in placements.items()}
    for where, result in results.items():
        for key, value in expected(flag).items():
            assert result[key] == value, f"{verb}, {where}: {result}"
    first, *rest = results.values()
    assert all(result == first for result in rest), results


@pytest.mark.parametrize("verb", ["list", "approve", "reject"])
def test_gateway_flags_go_before_or_after_the_approvals_verb(verb: str) -> None:
    args = VERBS[f"approvals {verb}"][1:]
    gateway = ["--gateway", "http://gw:8080", "--token", "secret", "--request-timeout", "3"]
    before = parsed(["approvals", *gateway, *args])
    after = parsed(["approvals", *args, *gateway])
    assert before == after
    assert (after["gateway"], after["token"], after["request_timeout"]) == (
        "http://gw:8080",
        "secret",
        3.0,
    )


def test_defaults_and_the_last_flag_wins() -> None:
    plain = parsed(["describe", "daily"])
    assert (plain["namespace"], plain["context"], plain["kubeconfig"]) == (None, None, None)
    assert parsed(["-n", "a", "describe", "daily", "-n", "b"])["namespace"] == "b"
    approvals = parsed(["approvals", "list"])
    assert approvals["token"] is None
    assert approvals["request_timeout"] == 30.0


def test_verb_flags_go_before_or_after_the_name() -> None:
    before = parsed(["trigger", "--timeout", "5", "--token", "t1", "daily"])
    after = parsed(["trigger", "daily", "--token", "t1", "--timeout", "5"])
    assert before == after
    assert (after["name"], after["timeout"], after["token"]) == ("daily", 5.0, "t1")
