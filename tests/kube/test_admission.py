"""The admission webhook in the real kube-apiserver: the API server calls a real operator
process over HTTPS (a self-signed certificate the operator makes, its CA patched into the
ValidatingWebhookConfiguration), with the session's Temporal dev server behind it.

Covers: every invalid Schedule and ApprovalPolicy of issue 18 is refused at ``kubectl
apply`` with a readable message, by the CRD's CEL rules or by the webhook (counted, and
none admitted); the webhook's refusal is word for word what the status says when the
webhook is not in the way; valid resources (long and dotted names included) are admitted
and become Ready; Temporal unreachable admits with a warning; the operator down refuses
Muster's kinds (failurePolicy Fail) and nothing else, while CEL still refuses; the serving
certificate is renewed in place without a refused request.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from muster_dev.kube import KubeAccess
from muster_dev.process import free_port
from muster_operator.policies import parse_policy
from muster_operator.reconcile import SpecError, parse_schedule
from muster_runtime.polling import wait_until
from muster_runtime.settings import TemporalSettings
from tests.kube.operator_support import (
    CRD_DIR,
    OperatorProcess,
    Resources,
    ca_bundle,
    operator_env,
    validating_configuration,
    webhook_env,
)
from tests.kube.support import Run

pytestmark = [pytest.mark.kube, pytest.mark.temporal, pytest.mark.slow]

LABEL = "muster.io/admission-test"
DENIED = 'admission webhook "{plural}.validate.muster.io" denied the request: '
INVALID = "is invalid: "  # the API server's own (schema and CEL) refusal


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crds(kubectl: Run, api_client: k8s.ApiClient) -> None:
    """The generated CRDs, Established and served."""
    kubectl("apply", "-f", str(CRD_DIR))
    custom = k8s.CustomObjectsApi(api_client)
    for plural in ("schedules", "approvalpolicies"):

        def served(plural: str = plural) -> bool:
            return custom.list_cluster_custom_object("muster.io", "v1alpha1", plural) is not None

        wait_until(served, what=f"{plural} to be served", timeout=30, ignore=(ApiException,))


@pytest.fixture(scope="module")
def admission(api_client: k8s.ApiClient) -> k8s.AdmissionregistrationV1Api:
    return k8s.AdmissionregistrationV1Api(api_client)


@pytest.fixture(scope="module")
def system_namespace(core_api: k8s.CoreV1Api) -> Iterator[str]:
    """Where the operators keep their webhook certificates."""
    name = f"muster-{uuid.uuid4().hex[:8]}"
    core_api.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    core_api.delete_namespace(name)


@dataclass
class Webhook:
    """An operator serving the webhook, and the configuration that sends requests to it
    for namespaces labelled ``muster.io/admission-test=<configuration>``."""

    operator: OperatorProcess
    configuration: str
    port: int
    secret: str

    def guard(self, core_api: k8s.CoreV1Api, namespace: str) -> str:
        """Put ``namespace`` under this webhook."""
        core_api.patch_namespace(namespace, {"metadata": {"labels": {LABEL: self.configuration}}})
        return namespace


@contextmanager
def serving_webhook(
    kube: KubeAccess,
    temporal_address: str,
    core_api: k8s.CoreV1Api,
    admission: k8s.AdmissionregistrationV1Api,
    kubectl: Run,
    system_namespace: str,
    log: Path,
    *,
    watch: list[str],
    **webhook: str,
) -> Iterator[Webhook]:
    """An operator with its webhook, registered in the API server, ready to answer."""
    name = f"muster-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    secret = f"{name}-tls"
    admission.create_validating_webhook_configuration(
        validating_configuration(name, port, (LABEL, name))  # type: ignore[arg-type]
    )
    env = operator_env(kube, temporal_address, namespaces=watch, policy_namespace=system_namespace)
    env |= webhook_env(
        port, secret=secret, secret_namespace=system_namespace, configuration=name, **webhook
    )
    process = OperatorProcess(env, log)
    served = Webhook(process, name, port, secret)
    try:
        process.start()
        wait_until(lambda: ca_bundle(admission, name), what="the CA bundle patched in", timeout=30)
        served.guard(core_api, system_namespace)
        probe = schedule_body("probe", system_namespace, base_spec())

        def answers() -> bool:
            result = apply(kubectl, probe, "--dry-run=server")
            return result.returncode == 0

        wait_until(answers, what="the webhook to admit a valid Schedule", timeout=60)
        yield served
    finally:
        process.stop()
        admission.delete_validating_webhook_configuration(name)


@pytest.fixture(scope="module")
def webhook(
    kube: KubeAccess,
    temporal_settings: TemporalSettings,
    core_api: k8s.CoreV1Api,
    admission: k8s.AdmissionregistrationV1Api,
    kubectl: Run,
    crds: None,
    system_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Webhook]:
    """The module's operator: it reconciles the per-test namespaces and serves the webhook
    for the ones a test guards."""
    with serving_webhook(
        kube, temporal_settings.address, core_api, admission, kubectl, system_namespace,
        tmp_path_factory.mktemp("admission") / "operator", watch=["t-*"],
    ) as served:  # fmt: skip
        yield served


# -- helpers -------------------------------------------------------------------------------


def base_spec(**extra: Any) -> dict[str, Any]:
    """The issue's base resource."""
    return {
        "cron": ["0 6 * * *"],
        "workflow": {"type": "EdgeCheck", "taskQueue": "edge-q"},
        **extra,
    }


def schedule_body(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "muster.io/v1alpha1", "kind": "Schedule",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}  # fmt: skip


def policy_body(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "muster.io/v1alpha1", "kind": "ApprovalPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}  # fmt: skip


def policy_spec(**reminders: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"approvers": {"users": ["ana"]}}
    if reminders:
        spec["reminders"] = reminders
    return spec


def apply(kubectl: Run, body: dict[str, Any], *flags: str) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", *flags, "-f", "-", input=json.dumps(body), check=False)


def core_message(body: dict[str, Any]) -> str | None:
    """What the reconcile core says about a resource (the InvalidSpec condition's message)."""
    try:
        (parse_schedule if body["kind"] == "Schedule" else parse_policy)(body)
    except SpecError as exc:
        return str(exc)
    return None


# -- the table of issue 18 -------------------------------------------------------------------

# (id, kind, spec, name or None, who refuses it, what the message says)
CASES: list[tuple[str, str, dict[str, Any], str | None, str, str]] = [
    ("cron 'not a cron'", "Schedule", base_spec(cron=["not a cron"]), None, "crd",
     "'not a cron' must be five cron fields as Temporal reads them"),
    ("cron '61 * * * *'", "Schedule", base_spec(cron=["61 * * * *"]), None, "crd",
     "must be five cron fields"),
    ("cron with 8 fields", "Schedule", base_spec(cron=["0 0 0 1 1 1 2030 5"]), None, "crd",
     "must be five cron fields"),
    ("cron with 6 fields (Quartz)", "Schedule", base_spec(cron=["0 0 6 * * *"]), None, "crd",
     "no seconds or year field"),
    ("cron '0 9 * * 1#2'", "Schedule", base_spec(cron=["0 9 * * 1#2"]), None, "crd",
     "no '#'"),
    ("cron '1-7' days", "Schedule", base_spec(cron=["0 9 * * 1-7"]), None, "webhook",
     "Temporal reads day of week '1-7' as MON,TUE,WED,THU,FRI,SAT"),
    ("cron day of month and week", "Schedule", base_spec(cron=["0 9 1 * MON"]), None, "crd",
     "restricts both the day of the month and the day of the week"),
    ("cron range backwards", "Schedule", base_spec(cron=["0 9-5 * * *"]), None, "webhook",
     "the range '9-5' runs backwards"),
    ("cron that never runs", "Schedule", base_spec(cron=["0 0 31 2 *"]), None, "webhook",
     "never runs"),
    ("cron '@every 1h'", "Schedule", base_spec(cron=["@every 1h"]), None, "crd",
     "must be five cron fields"),
    ("time zone '+05:00'", "Schedule", base_spec(timeZone="+05:00"), None, "crd",
     "'+05:00' is not an IANA time zone"),
    ("time zone 'Local'", "Schedule", base_spec(timeZone="Local"), None, "crd",
     "'Local' is not an IANA time zone"),
    ("time zone 'Mars/Olympus'", "Schedule", base_spec(timeZone="Mars/Olympus"), None, "crd",
     "unknown time zone Mars/Olympus"),
    ("calendar hour 25", "Schedule", base_spec(cron=[], calendars=[{"hour": "25"}]), None,
     "crd", "hour '25' is not 0-23"),
    ("calendar day FUNDAY", "Schedule", base_spec(cron=[], calendars=[{"dayOfWeek": "FUNDAY"}]),
     None, "crd", "day of week 'FUNDAY' is not"),
    ("calendar year 2150", "Schedule", base_spec(cron=[], calendars=[{"year": "2150"}]), None,
     "crd", "year '2150' is not 2000-2100"),
    ("interval offset = every", "Schedule",
     base_spec(cron=[], intervals=[{"every": "1h", "offset": "60m"}]), None, "crd",
     "offset must be shorter than every"),
    ("remainingActions: 0", "Schedule", base_spec(remainingActions=0), None, "crd",
     "greater than or equal to 1"),
    ("jitter '9999999999d'", "Schedule", base_spec(jitter="9999999999d"), None, "crd",
     "'9999999999d' is not a duration"),
    ("jitter above 100 years", "Schedule", base_spec(jitter="36501d"), None, "crd",
     "at most 36500d"),
    ("search attribute MusterPattern", "Schedule",
     base_spec(workflow={"type": "W", "taskQueue": "q",
                         "searchAttributes": {"MusterPattern": "x"}}),
     None, "crd", "searchAttributes.MusterPattern is set by Muster"),
    ("search attribute not registered", "Schedule",
     base_spec(workflow={"type": "W", "taskQueue": "q", "searchAttributes": {"NoSuchAttr": "x"}}),
     None, "webhook", "spec.workflow.searchAttributes.NoSuchAttr: not registered in Temporal"),
    ("search attribute of another type", "Schedule",
     base_spec(workflow={"type": "W", "taskQueue": "q",
                         "searchAttributes": {"MusterAmountMinor": "1"}}),
     None, "webhook", "registered in Temporal namespace 'default' as Int"),
    ("Temporal namespace that does not exist", "Schedule",
     base_spec(temporal={"namespace": "no-such-namespace"}), None, "webhook",
     "Temporal namespace 'no-such-namespace' does not exist"),
    ("name too long for the schedule id", "Schedule", base_spec(), "n" * 218, "webhook",
     "metadata.name: the Temporal schedule id"),
    ("reminder cron '61 * * * *'", "ApprovalPolicy", policy_spec(cron="61 * * * *"), None, "crd",
     "must be five cron fields"),
    ("reminder time zone '+05:00'", "ApprovalPolicy",
     policy_spec(cron="0 9 * * 1-5", timeZone="+05:00"), None, "crd", "is not an IANA time zone"),
    ("reminder on the 2nd Monday '#'", "ApprovalPolicy", policy_spec(cron="0 9 * * 1#2"), None,
     "crd", "no '#'"),
    ("reminder '1-7' days", "ApprovalPolicy", policy_spec(cron="0 9 * * 1-7"), None, "webhook",
     "Temporal reads day of week '1-7'"),
    ("name too long for the reminder id", "ApprovalPolicy", policy_spec(cron="0 9 * * 1-5"),
     "p" * 208, "webhook", "the Temporal schedule id of the reminders"),
]  # fmt: skip


def test_every_invalid_resource_is_refused_at_apply_time(
    webhook: Webhook, namespace: str, core_api: k8s.CoreV1Api, kubectl: Run
) -> None:
    webhook.guard(core_api, namespace)
    refused: dict[str, list[str]] = {"crd": [], "webhook": []}
    problems = []
    for case, kind, spec, name, who, message in CASES:
        plural = "schedules" if kind == "Schedule" else "approvalpolicies"
        make = schedule_body if kind == "Schedule" else policy_body
        body = make(name or "bad", namespace, spec)
        result = apply(kubectl, body)
        said = " ".join(result.stderr.split())
        if result.returncode == 0:
            problems.append(f"{case}: admitted ({result.stdout.strip()})")
            continue
        layer = (
            "webhook" if DENIED.format(plural=plural) in said else "crd" if INVALID in said else "?"
        )
        refused.setdefault(layer, []).append(case)
        if layer != who or message not in said:
            problems.append(
                f"{case}: refused by {layer}, expected {who} saying {message!r}: {said}"
            )
        expected = core_message(body)
        # The webhook's answer is the reconcile core's message, word for word.
        if layer == "webhook" and expected and DENIED.format(plural=plural) + expected not in said:
            problems.append(f"{case}: the webhook said {said!r}, the core says {expected!r}")
    total = sum(len(v) for v in refused.values())
    summary = (
        f"{len(CASES)} invalid resources: {total} refused at apply time "
        f"({len(refused['crd'])} by the CRD's rules, {len(refused['webhook'])} by the webhook), "
        f"{len(CASES) - total} admitted"
    )
    print(summary)  # the count the issue asks for, in the test's output
    assert not problems, summary + "\n" + "\n".join(problems)
    assert total == len(CASES)


def test_valid_resources_are_admitted_and_become_ready(
    webhook: Webhook, api_client: k8s.ApiClient, namespace: str, core_api: k8s.CoreV1Api,
    kubectl: Run,
) -> None:  # fmt: skip
    webhook.guard(core_api, namespace)
    # Longer than 63 characters, with dots: any Kubernetes name whose schedule id fits.
    long_name = "daily.report." + "x" * 60
    keyed = base_spec(
        workflow={"type": "EdgeCheck", "taskQueue": "edge-q",
                  "searchAttributes": {"MusterBusinessKey": "k-1"}},
        temporal={"namespace": "default"},
        timeZone="Europe/Berlin",
        # The second Monday, which '0 9 * * 1#2' cannot say: a calendar's fields all match.
        calendars=[{"dayOfWeek": "MON", "dayOfMonth": "8-14", "hour": "9"}],
    )  # fmt: skip
    policy_name = "p" * 71
    reminders = policy_spec(cron="0 9 * * 1-5", timeZone="Europe/Berlin")
    for body in (
        schedule_body(long_name, namespace, base_spec()),
        schedule_body("keyed", namespace, keyed),
        policy_body(policy_name, namespace, reminders),
    ):
        result = apply(kubectl, body)
        assert result.returncode == 0, result.stderr
        assert "Warning" not in result.stderr, result.stderr
    custom = k8s.CustomObjectsApi(api_client)
    schedules = Resources(custom, namespace, "schedules", "Schedule")
    ready = schedules.wait_synced(long_name, timeout=60)
    assert ready["status"]["scheduleId"] == f"{namespace}.{long_name}"
    schedules.wait_synced("keyed", timeout=60)
    policies = Resources(custom, namespace, "approvalpolicies", "ApprovalPolicy")
    policies.wait_condition(policy_name, "Ready", "True", timeout=60)
    # An edit that keeps the spec valid is admitted; one that breaks it is refused, and the
    # resource stays as it was.
    edited = schedule_body("keyed", namespace, {**keyed, "cron": ["15 7 * * 1-5"]})
    assert apply(kubectl, edited).returncode == 0
    broken = schedule_body("keyed", namespace, {**keyed, "cron": ["0 9 * * 1-7"]})
    refused = apply(kubectl, broken)
    assert refused.returncode != 0
    assert "Temporal reads day of week '1-7'" in refused.stderr
    assert schedules.get("keyed")["spec"]["cron"] == ["15 7 * * 1-5"]
    # Deleting is never refused (the finalizer's removal is an update without a spec change).
    for name in (long_name, "keyed"):
        schedules.delete(name)

        def gone(name: str = name) -> bool:
            return schedules.gone(name)

        wait_until(gone, what=f"{name} to go", timeout=60)


def test_the_webhook_says_what_the_status_would_have_said(
    webhook: Webhook, api_client: k8s.ApiClient, core_api: k8s.CoreV1Api, kubectl: Run,
    namespace: str,
) -> None:  # fmt: skip
    """The same invalid resources, once where the webhook refuses them and once where it is
    not in the way (an unguarded namespace): the refusal and the status message match."""
    guarded = webhook.guard(core_api, namespace)
    unguarded = f"t-{uuid.uuid4().hex[:12]}"
    core_api.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=unguarded)))
    try:
        custom = k8s.CustomObjectsApi(api_client)
        compared = 0
        for case, kind, spec, given, who, _ in CASES:
            if who != "webhook":
                continue
            plural = "schedules" if kind == "Schedule" else "approvalpolicies"
            make = schedule_body if kind == "Schedule" else policy_body
            name = given or f"c{compared}"
            refused = apply(kubectl, make(name, guarded, spec))
            said = " ".join(refused.stderr.split())
            denial = said.split(DENIED.format(plural=plural), 1)[1].strip()
            assert apply(kubectl, make(name, unguarded, spec)).returncode == 0, case
            resources = Resources(custom, unguarded, plural, kind)
            condition = resources.wait_condition(name, "Ready", "False", "InvalidSpec", timeout=60)
            # Word for word (the namespace's name aside).
            assert condition["message"] == denial.replace(guarded, unguarded), case
            compared += 1
        assert compared >= 5
    finally:
        core_api.delete_namespace(unguarded)


# -- Temporal away, operator away, certificates renewed ---------------------------------------


@pytest.fixture
def spare(
    kube: KubeAccess,
    core_api: k8s.CoreV1Api,
    admission: k8s.AdmissionregistrationV1Api,
    kubectl: Run,
    crds: None,
    system_namespace: str,
    tmp_path: Path,
) -> Iterator[Webhook]:
    """A second operator whose Temporal is not there (nothing listens on its address); it
    reconciles nothing (it watches only its own namespace)."""
    with serving_webhook(
        kube, f"127.0.0.1:{free_port()}", core_api, admission, kubectl, system_namespace,
        tmp_path / "operator", watch=[system_namespace], temporal_timeout_seconds="1",
    ) as served:  # fmt: skip
        yield served


def test_temporal_unreachable_admits_with_a_warning_and_operator_down_refuses(
    spare: Webhook, core_api: k8s.CoreV1Api, namespace: str, kubectl: Run
) -> None:
    guarded = spare.guard(core_api, namespace)
    started = time.monotonic()
    result = apply(kubectl, schedule_body("waits", guarded, base_spec()))
    assert result.returncode == 0, result.stderr
    assert "Warning: Temporal could not be reached" in result.stderr, result.stderr
    assert time.monotonic() - started < 10, "the webhook must not make kubectl wait long"
    # Static rules still apply without Temporal.
    refused = apply(kubectl, schedule_body("bad", guarded, base_spec(cron=["0 9 * * 1-7"])))
    assert refused.returncode != 0
    assert "Temporal reads day of week '1-7'" in refused.stderr

    spare.operator.stop()
    # failurePolicy Fail: Muster's kinds are refused while the webhook is away...
    down = apply(kubectl, schedule_body("while-down", guarded, base_spec()))
    assert down.returncode != 0
    assert 'failed calling webhook "schedules.validate.muster.io"' in down.stderr, down.stderr
    down = apply(kubectl, policy_body("while-down", guarded, policy_spec()))
    assert 'failed calling webhook "approvalpolicies.validate.muster.io"' in down.stderr
    # ...the CRD's own rules still answer first, with their message...
    cel = apply(
        kubectl, schedule_body("bad", guarded, base_spec(timeZone="+05:00")), "--dry-run=server"
    )
    assert "'+05:00' is not an IANA time zone" in cel.stderr, cel.stderr
    # ...and nothing else in the cluster is affected.
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"},
                  "metadata": {"name": "unaffected", "namespace": guarded}}  # fmt: skip
    assert apply(kubectl, config_map).returncode == 0
    account = {"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "unaffected", "namespace": guarded}}  # fmt: skip
    assert apply(kubectl, account).returncode == 0
    # Back up: admitted again.
    spare.operator.start()
    wait_until(
        lambda: apply(kubectl, schedule_body("after", guarded, base_spec())).returncode == 0,
        what="the webhook to be back",
        timeout=60,
    )


def _served_serial(port: int) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only reading which certificate is presented
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_the_certificate_is_renewed_without_a_refused_request(
    kube: KubeAccess,
    temporal_settings: TemporalSettings,
    core_api: k8s.CoreV1Api,
    admission: k8s.AdmissionregistrationV1Api,
    kubectl: Run,
    crds: None,
    system_namespace: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    # Certificates that live 45 s and are renewed when 30 s are left: one every ~15 s.
    with serving_webhook(
        kube, temporal_settings.address, core_api, admission, kubectl, system_namespace,
        tmp_path / "operator", watch=[system_namespace], certificate_days=str(45 / 86400),
        renew_before_days=str(30 / 86400), check_seconds="1",
    ) as served:  # fmt: skip
        guarded = served.guard(core_api, namespace)
        bundle = ca_bundle(admission, served.configuration)
        serials = {_served_serial(served.port)}
        body = schedule_body("renewed", guarded, base_spec())
        deadline = time.monotonic() + 40
        requests = 0
        while time.monotonic() < deadline:
            result = apply(kubectl, body, "--dry-run=server")
            assert result.returncode == 0, f"refused during a renewal: {result.stderr}"
            requests += 1
            serials.add(_served_serial(served.port))
        assert len(serials) >= 3, f"{len(serials)} certificates in 40 s"
        assert ca_bundle(admission, served.configuration) == bundle, "the CA did not change"
        assert requests > 20
