"""``kubectl muster``: day-to-day verbs on Muster's resources.

kubectl finds ``kubectl-muster`` on the PATH and runs it as ``kubectl muster ...``:

    kubectl muster trigger daily-report              # one run now (once per token)
    kubectl muster backfill daily-report --start 2026-11-01T00:00:00Z --end 2026-11-08T00:00:00Z
    kubectl muster suspend daily-report / resume daily-report
    kubectl muster describe daily-report             # Temporal's view of the schedule
    kubectl muster approvals list|approve|reject     # through the gateway's API
    kubectl muster versions [muster-approval]        # each worker's builds, their state

Triggers and backfills are annotations with a token that the operator acts on once and
echoes in status, so the verbs wait (``--timeout``) until the operator has acted.
``describe`` reads Temporal directly (``TEMPORAL_ADDRESS`` ...); ``approvals`` talks to the
gateway: ``--gateway`` or ``MUSTER_GATEWAY``, else the Muster gateway Service of the current
kube context (its load balancer address, or ``kubectl port-forward`` to it for the command's
duration); the token comes from ``--token`` or ``MUSTER_TOKEN``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast, get_args

import httpx
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from muster_api import v1alpha1
from muster_operator.reconcile import (
    BACKFILL_ANNOTATION,
    TRIGGER_ANNOTATION,
    BackfillRequest,
    SpecError,
    describe_errors,
    memo_owner,
    parse_schedule,
    schedule_id,
    temporal_namespace,
)
from muster_runtime.polling import PollTimeout, wait_until
from muster_runtime.settings import SettingsError, TemporalSettings, load_settings

GROUP, VERSION, PLURAL = v1alpha1.GROUP, v1alpha1.VERSION, "schedules"
GATEWAY_SELECTOR = "app.kubernetes.io/part-of=muster,app.kubernetes.io/component=gateway"
"""Labels of the chart's gateway Service."""
GATEWAY_HINT = "set MUSTER_GATEWAY=https://<the gateway> or pass --gateway URL"


class CommandError(Exception):
    """What went wrong, said so the user can fix it (exit code 1, or 2 for usage)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# -- Kubernetes ------------------------------------------------------------------------------


def _api(args: argparse.Namespace) -> tuple[k8s.CustomObjectsApi, str]:
    try:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=args.kubeconfig, context=args.context
        )
        contexts, active = k8s_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=args.kubeconfig
        )
        if args.context:
            active = next((c for c in contexts if c.get("name") == args.context), active)
    except (k8s_config.ConfigException, OSError) as exc:
        raise CommandError(f"cannot load the kubeconfig: {exc}") from None
    namespace = args.namespace or active.get("context", {}).get("namespace") or "default"
    return k8s.CustomObjectsApi(), namespace


def _read(api: k8s.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    try:
        found = cast(
            "dict[str, Any]",
            api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name),
        )
    except ApiException as exc:
        if exc.status == 404:
            raise CommandError(
                f'Schedule "{name}" not found in namespace "{namespace}" '
                "(kubectl get schedules -A lists them)"
            ) from None
        raise CommandError(f"reading Schedule {namespace}/{name}: {exc.reason}") from None
    return found


def _patch(
    api: k8s.CustomObjectsApi, namespace: str, name: str, body: dict[str, Any]
) -> dict[str, Any]:
    try:
        patched = cast(
            "dict[str, Any]",
            api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, body),
        )
    except ApiException as exc:
        if exc.status == 404:
            raise CommandError(f'Schedule "{name}" not found in namespace "{namespace}"') from None
        detail = _api_message(exc)
        raise CommandError(f"the API server refused the change: {detail}") from None
    return patched


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


def _wait_status(
    api: k8s.CustomObjectsApi,
    namespace: str,
    name: str,
    done: Callable[[dict[str, Any]], bool],
    *,
    timeout: float,
    what: str,
) -> dict[str, Any]:
    try:
        return wait_until(
            lambda: (
                body if done((body := _read(api, namespace, name)).get("status") or {}) else None
            ),
            what=what,
            timeout=timeout,
            interval=0.5,
        )
    except PollTimeout:
        ready = _condition(_read(api, namespace, name), "Ready")
        why = f" (Ready: {ready.get('reason')}: {ready.get('message')})" if ready else ""
        raise CommandError(
            f"the operator has not {what} within {timeout:g}s{why}; the request stays "
            "in the annotation and is acted on when the operator gets to it"
        ) from None


def _condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return {}


def _token(given: str | None) -> str:
    return given or f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def cmd_trigger(args: argparse.Namespace) -> int:
    api, namespace = _api(args)
    _read(api, namespace, args.name)
    token = _token(args.token)
    _patch(api, namespace, args.name, {"metadata": {"annotations": {TRIGGER_ANNOTATION: token}}})
    print(f"schedule.muster.io/{args.name} trigger requested (token {token})")
    if args.timeout > 0:
        _wait_status(
            api,
            namespace,
            args.name,
            lambda s: s.get("lastHandledTrigger") == token,
            timeout=args.timeout,
            what="started the run",
        )
        print(f"schedule.muster.io/{args.name} triggered")
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    try:
        request = BackfillRequest(
            token=_token(args.token),
            start_at=args.start,
            end_at=args.end,
            overlap=args.overlap,
        )
    except ValidationError as exc:
        raise CommandError(f"bad backfill: {describe_errors(exc)}", code=2) from None
    if request.end_at <= request.start_at:
        raise CommandError("bad backfill: --end must be after --start", code=2)
    api, namespace = _api(args)
    _read(api, namespace, args.name)
    text = request.model_dump_json(by_alias=True)
    _patch(api, namespace, args.name, {"metadata": {"annotations": {BACKFILL_ANNOTATION: text}}})
    print(f"schedule.muster.io/{args.name} backfill requested (token {request.token})")
    if args.timeout > 0:
        _wait_status(
            api,
            namespace,
            args.name,
            lambda s: s.get("lastHandledBackfill") == request.token,
            timeout=args.timeout,
            what="started the backfill",
        )
        print(
            f"schedule.muster.io/{args.name} backfilled "
            f"{request.start_at.isoformat()} to {request.end_at.isoformat()}"
        )
    return 0


def _set_suspend(args: argparse.Namespace, suspend: bool) -> int:
    api, namespace = _api(args)
    body = _read(api, namespace, args.name)
    verb = "suspended" if suspend else "resumed"
    if bool((body.get("spec") or {}).get("suspend")) == suspend:
        generation = body["metadata"].get("generation")
        print(f"schedule.muster.io/{args.name} already {verb}")
    else:
        patched = _patch(api, namespace, args.name, {"spec": {"suspend": suspend}})
        generation = patched["metadata"].get("generation")
        print(f"schedule.muster.io/{args.name} {verb}")
    if args.timeout > 0:
        want = "True" if suspend else "False"
        _wait_status(
            api,
            namespace,
            args.name,
            lambda s: (
                any(
                    c.get("type") == "Suspended" and c.get("status") == want
                    for c in s.get("conditions") or []
                )
                and s.get("observedGeneration") == generation
            ),
            timeout=args.timeout,
            what=f"{verb} the Temporal schedule",
        )
    return 0


def cmd_suspend(args: argparse.Namespace) -> int:
    return _set_suspend(args, True)


def cmd_resume(args: argparse.Namespace) -> int:
    return _set_suspend(args, False)


# -- describe: Temporal's view ---------------------------------------------------------------


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else "-"


def _ranges(ranges: Sequence[Any]) -> str:
    parts = []
    for r in ranges:
        text = str(r.start) if r.end in (r.start, 0) else f"{r.start}-{r.end}"
        parts.append(text + (f"/{r.step}" if r.step > 1 else ""))
    return ",".join(parts) or "*"


async def temporal_view(resource: v1alpha1.Schedule, settings: TemporalSettings) -> dict[str, Any]:
    """What Temporal holds for a Schedule resource, as a JSON-ready dict."""
    from temporalio.service import RPCError, RPCStatusCode  # noqa: PLC0415

    from muster_runtime.client import connect  # noqa: PLC0415

    namespace = temporal_namespace(resource, settings.namespace)
    client = await connect(settings.model_copy(update={"namespace": namespace}), tracing=False)
    sid = schedule_id(resource)
    try:
        described = await client.get_schedule_handle(sid).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return {"scheduleId": sid, "temporalNamespace": namespace, "exists": False}
        raise
    schedule, info = described.schedule, described.info
    action = schedule.action
    spec = schedule.spec
    calendars = [
        {
            "second": _ranges(c.second),
            "minute": _ranges(c.minute),
            "hour": _ranges(c.hour),
            "dayOfMonth": _ranges(c.day_of_month),
            "month": _ranges(c.month),
            "dayOfWeek": _ranges(c.day_of_week),
            **({"comment": c.comment} if c.comment else {}),
        }
        for c in spec.calendars
    ]
    return {
        "scheduleId": sid,
        "temporalNamespace": namespace,
        "exists": True,
        "owner": memo_owner(described),
        "workflow": {
            "type": getattr(action, "workflow", None),
            "taskQueue": getattr(action, "task_queue", None),
            "id": getattr(action, "id", None),
        },
        "spec": {
            "calendars": calendars,
            "intervals": [{"every": str(i.every), "offset": str(i.offset)} for i in spec.intervals],
            "timeZone": spec.time_zone_name or "UTC",
            "startAt": _when(spec.start_at) if spec.start_at else None,
            "endAt": _when(spec.end_at) if spec.end_at else None,
            "jitter": str(spec.jitter) if spec.jitter else None,
        },
        "policy": {
            "overlap": schedule.policy.overlap.name,
            "catchupWindow": str(schedule.policy.catchup_window),
            "pauseOnFailure": schedule.policy.pause_on_failure,
        },
        "state": {
            "paused": schedule.state.paused,
            "note": schedule.state.note,
            "remainingActions": (
                schedule.state.remaining_actions if schedule.state.limited_actions else None
            ),
        },
        "actions": {
            "taken": info.num_actions,
            "missedCatchupWindow": info.num_actions_missed_catchup_window,
            "skippedOverlap": info.num_actions_skipped_overlap,
        },
        "nextActionTimes": [_when(t) for t in info.next_action_times[:5]],
        "recentActions": [
            {
                "scheduledAt": _when(r.scheduled_at),
                "startedAt": _when(r.started_at),
                "workflowId": getattr(r.action, "workflow_id", None),
            }
            for r in info.recent_actions[-5:]
        ],
        "runningWorkflows": [getattr(a, "workflow_id", None) for a in info.running_actions],
        "createdAt": _when(info.created_at),
        "lastUpdatedAt": _when(info.last_updated_at),
    }


def _print_view(view: dict[str, Any]) -> None:
    print(f"Schedule ID:      {view['scheduleId']}")
    print(f"Namespace:        {view['temporalNamespace']} (Temporal)")
    if not view["exists"]:
        print("State:            not in Temporal (the operator creates it on its next pass)")
        return
    owner = view["owner"] or "NOT Muster's (no ownership marker)"
    print(f"Owner:            {owner}")
    workflow = view["workflow"]
    print(f"Workflow:         {workflow['type']} on {workflow['taskQueue']} (id {workflow['id']})")
    spec = view["spec"]
    for calendar in spec["calendars"]:
        fields = " ".join(f"{k}={v}" for k, v in calendar.items() if k != "comment" and v != "*")
        comment = f"  # {calendar['comment']}" if calendar.get("comment") else ""
        print(f"Calendar:         {fields or 'every second'}{comment}")
    for interval in spec["intervals"]:
        print(f"Interval:         every {interval['every']} (offset {interval['offset']})")
    print(f"Time zone:        {spec['timeZone']}")
    for key in ("startAt", "endAt", "jitter"):
        if spec[key]:
            print(f"{key + ':':<18}{spec[key]}")
    policy = view["policy"]
    print(
        f"Policy:           overlap {policy['overlap']}, catch-up {policy['catchupWindow']}, "
        f"pause on failure {policy['pauseOnFailure']}"
    )
    state = view["state"]
    paused = "paused" if state["paused"] else "running"
    note = f" ({state['note']})" if state["note"] else ""
    print(f"State:            {paused}{note}")
    if state["remainingActions"] is not None:
        print(f"Remaining runs:   {state['remainingActions']}")
    actions = view["actions"]
    print(
        f"Actions:          {actions['taken']} taken, {actions['skippedOverlap']} skipped "
        f"(overlap), {actions['missedCatchupWindow']} missed (catch-up window)"
    )
    print("Next runs:        " + (", ".join(view["nextActionTimes"]) or "-"))
    print("Recent runs:")
    for run in view["recentActions"] or [{"scheduledAt": "-", "workflowId": "none yet"}]:
        print(f"  {run['scheduledAt']}  {run['workflowId']}")
    print("Running:          " + (", ".join(view["runningWorkflows"]) or "-"))


def cmd_describe(args: argparse.Namespace) -> int:
    api, namespace = _api(args)
    body = _read(api, namespace, args.name)
    try:
        resource = parse_schedule(body)
    except SpecError as exc:
        raise CommandError(f"Schedule {namespace}/{args.name} is not valid: {exc}") from None
    try:
        settings = load_settings(TemporalSettings)
    except SettingsError as exc:
        raise CommandError("Temporal configuration: " + "; ".join(exc.problems), 2) from None
    try:
        view = asyncio.run(temporal_view(resource, settings))
    except Exception as exc:
        raise CommandError(
            f"cannot read the schedule from Temporal at {settings.address}: {exc} "
            "(set TEMPORAL_ADDRESS, or kubectl port-forward to the frontend)"
        ) from None
    status = body.get("status") or {}
    view["kubernetes"] = {
        "resource": f"{namespace}/{args.name}",
        "generation": body["metadata"].get("generation"),
        "observedGeneration": status.get("observedGeneration"),
        "conditions": {
            c["type"]: f"{c['status']} ({c.get('reason')})" for c in status.get("conditions") or []
        },
    }
    if args.output == "json":
        print(json.dumps(view, indent=2))
        return 0
    kube = view["kubernetes"]
    print(f"Resource:         schedule.muster.io/{args.name} in {namespace}")
    print(f"Generation:       {kube['generation']} (observed {kube['observedGeneration']})")
    print(
        "Conditions:       " + (", ".join(f"{k}={v}" for k, v in kube["conditions"].items()) or "-")
    )
    _print_view(view)
    return 0


# -- worker versions (WorkerDeployment status) -----------------------------------------------

WORKERS = "workerdeployments"


def _when_short(text: str | None) -> str:
    if not text:
        return "-"
    return text.replace("T", " ")[:19]


def version_rows(body: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per build of a WorkerDeployment, from its status."""
    status = body.get("status") or {}
    name = body["metadata"]["name"]
    rows: list[tuple[str, ...]] = []
    for entry in status.get("versions") or []:
        gate = entry.get("gate") or {}
        gate_text = gate.get("state", "-")
        if gate.get("replayed") is not None and gate_text in ("Passed", "Failed"):
            gate_text += f" ({gate['replayed']} replayed)"
        ramp = entry.get("rampPercentage")
        state = entry.get("state", "?") + (" (rolled back)" if entry.get("rolledBack") else "")
        pods = (
            f"{entry.get('readyReplicas', 0)}/{entry['replicas']}"
            if entry.get("replicas") is not None
            else "-"
        )
        since = entry.get("currentSince") or entry.get("drainedSince") or entry.get("createdAt")
        rows.append(
            (
                name,
                entry["buildId"],
                state,
                f"{ramp:g}%" if ramp is not None else "-",
                str(entry.get("runningWorkflows", "-")),
                str(entry.get("pinnedWorkflows", "-")),
                pods,
                str(entry.get("pollers", "-")),
                gate_text,
                _when_short(since),
            )
        )
    return rows


def cmd_versions(args: argparse.Namespace) -> int:
    api, namespace = _api(args)
    try:
        if args.name:
            items = [
                cast(
                    "dict[str, Any]",
                    api.get_namespaced_custom_object(GROUP, VERSION, namespace, WORKERS, args.name),
                )
            ]
        elif args.all_namespaces:
            listed = cast("dict[str, Any]", api.list_cluster_custom_object(GROUP, VERSION, WORKERS))
            items = listed["items"]
        else:
            listed = cast(
                "dict[str, Any]",
                api.list_namespaced_custom_object(GROUP, VERSION, namespace, WORKERS),
            )
            items = listed["items"]
    except ApiException as exc:
        if exc.status == 404 and args.name:
            raise CommandError(
                f'WorkerDeployment "{args.name}" not found in namespace "{namespace}" '
                "(kubectl get workerdeployments -A lists them)"
            ) from None
        raise CommandError(f"reading WorkerDeployments: {_api_message(exc)}") from None
    if args.output == "json":
        print(json.dumps([
            {"name": i["metadata"]["name"], "namespace": i["metadata"]["namespace"],
             **{k: (i.get("status") or {}).get(k) for k in (
                 "deploymentName", "currentBuildId", "targetBuildId", "rampingBuildId",
                 "rampPercentage", "versions", "conditions")}}
            for i in items
        ], indent=2))  # fmt: skip
        return 0
    header = ("WORKER", "BUILD", "STATE", "RAMP", "RUNNING", "PINNED", "PODS", "POLLERS",
              "GATE", "SINCE")  # fmt: skip
    table: list[tuple[str, ...]] = [header]
    for item in items:
        table += version_rows(item)
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("   ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]))
    for item in items:
        ready = _condition(item, "Ready")
        if ready and ready.get("status") != "True":
            print(f"{item['metadata']['name']}: {ready.get('reason')}: {ready.get('message')}")
    if not items:
        print(f"no WorkerDeployments in namespace {namespace}")
    return 0


# -- approvals (through the gateway) ---------------------------------------------------------


def _gateway_token(args: argparse.Namespace) -> str:
    token: str | None = args.token or os.environ.get("MUSTER_TOKEN")
    if not token:
        raise CommandError(
            "approvals need your gateway token: pass --token TOKEN or set MUSTER_TOKEN=TOKEN "
            "(the access token you sign in to the approver page with; your Muster admin "
            "issues it)",
            code=2,
        )
    return token


@dataclass(frozen=True)
class GatewayService:
    """The chart's gateway Service as found in a kube context."""

    namespace: str
    name: str
    port: int
    address: str | None
    """Its load balancer's address, if it has one."""

    @classmethod
    def of(cls, service: k8s.V1Service) -> GatewayService:
        meta = service.metadata or k8s.V1ObjectMeta()
        ports = (service.spec.ports if service.spec else None) or []
        chosen = next((p for p in ports if p.name == "http"), ports[0] if ports else None)
        balancer = service.status.load_balancer if service.status else None
        ingress = (balancer.ingress if balancer else None) or []
        return cls(
            namespace=str(meta.namespace),
            name=str(meta.name),
            port=int(chosen.port) if chosen else 80,
            address=next((i.ip or i.hostname for i in ingress if i.ip or i.hostname), None),
        )


def _gateway_service(args: argparse.Namespace) -> GatewayService:
    """The Muster gateway Service in the namespace of the current kube context (or -n)."""
    try:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=args.kubeconfig, context=args.context
        )
        contexts, active = k8s_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=args.kubeconfig
        )
    except (k8s_config.ConfigException, OSError) as exc:
        raise CommandError(
            f"no gateway given and no kube context to find one in ({exc}); {GATEWAY_HINT}", 2
        ) from None
    if args.context:
        active = next((c for c in contexts if c.get("name") == args.context), active)
    context = active.get("name", "?")
    namespace = args.namespace or active.get("context", {}).get("namespace") or "default"
    core = k8s.CoreV1Api()
    try:
        found = core.list_namespaced_service(namespace, label_selector=GATEWAY_SELECTOR).items
    except ApiException as exc:
        raise CommandError(
            f"no gateway given, and looking for the Muster gateway Service in kube context "
            f"{context} failed: {_api_message(exc)}; {GATEWAY_HINT}"
        ) from None
    except OSError as exc:  # urllib3's connection errors
        raise CommandError(
            f"no gateway given, and the API server of kube context {context} cannot be "
            f"reached ({exc}); {GATEWAY_HINT}"
        ) from None
    services = [GatewayService.of(service) for service in found]
    if not services:
        raise CommandError(
            f"no gateway given, and namespace {namespace} of kube context {context} has no "
            f"Muster gateway Service (labels {GATEWAY_SELECTOR}); name the namespace it runs "
            f"in with -n NAMESPACE, or {GATEWAY_HINT}"
        )
    if len(services) > 1:
        names = ", ".join(s.name for s in services)
        raise CommandError(
            f"namespace {namespace} of kube context {context} has several Muster gateway "
            f"Services ({names}); {GATEWAY_HINT}"
        )
    return services[0]


@contextmanager
def _port_forward(args: argparse.Namespace, service: GatewayService) -> Iterator[str]:
    """``kubectl port-forward`` to the Service for as long as the command runs."""
    kubectl = shutil.which("kubectl")
    where = f"{service.namespace}/{service.name}"
    if kubectl is None:
        raise CommandError(
            f"found the gateway Service {where}, but no kubectl to port-forward to it; "
            f"{GATEWAY_HINT}"
        )
    command = [kubectl]
    if args.kubeconfig:
        command += ["--kubeconfig", str(args.kubeconfig)]
    if args.context:
        command += ["--context", str(args.context)]
    # A gateway without a running pod fails in seconds, not after kubectl's minute.
    command += ["port-forward", "--pod-running-timeout=15s", "-n", service.namespace,
                f"service/{service.name}", f":{service.port}"]  # fmt: skip
    forward = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> ..." or EOF
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        if found is None:
            forward.kill()
            error = (forward.communicate(timeout=10)[1] or line).strip()
            raise CommandError(
                f"cannot port-forward to the gateway Service {where}: {error}; {GATEWAY_HINT}"
            )
        print(
            f"(using gateway Service {where} through kubectl port-forward; set "
            "MUSTER_GATEWAY to skip this)",
            file=sys.stderr,
        )
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        if forward.poll() is None:
            forward.terminate()
            forward.wait(timeout=10)


@contextmanager
def _gateway_url(args: argparse.Namespace) -> Iterator[str]:
    """Where the gateway is: --gateway, $MUSTER_GATEWAY, or the kube context's Service."""
    given = args.gateway or os.environ.get("MUSTER_GATEWAY") or os.environ.get("MUSTER_GATEWAY_URL")
    if given:
        yield given
        return
    service = _gateway_service(args)
    if service.address:
        yield f"http://{service.address}:{service.port}"
        return
    with _port_forward(args, service) as url:
        yield url


@contextmanager
def _gateway(args: argparse.Namespace) -> Iterator[httpx.Client]:
    token = _gateway_token(args)
    with (
        _gateway_url(args) as url,
        httpx.Client(
            base_url=url.rstrip("/") + "/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=args.request_timeout,
        ) as http,
    ):
        yield http


def _call(http: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise CommandError(f"cannot reach the gateway at {http.base_url}: {exc}") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise CommandError(f"the gateway answered {response.status_code}: {detail}")
    return response.json()


def cmd_approvals_list(args: argparse.Namespace) -> int:
    params = {
        key: value
        for key, value in (
            ("status", args.status),
            ("policy", args.policy),
            ("approver", args.approver),
            ("limit", args.limit),
        )
        if value is not None
    }
    with _gateway(args) as http:
        rows = _call(http, "GET", "/approvals", params=params)
    if args.output == "json":
        print(json.dumps(rows, indent=2))
        return 0
    header = ("REQUEST", "STATUS", "POLICY", "REQUESTER", "WAITING FOR", "TITLE")
    table = [header] + [
        (
            r["request_id"],
            r["status"],
            r["policy"],
            r["requester"],
            ",".join(r.get("waiting_for") or []) or "-",
            r["title"],
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header) - 1)]
    for row in table:
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=False)]
        print("   ".join([*cells, str(row[-1])]))
    if not rows:
        print("no approval requests match")
    return 0


def _decide(args: argparse.Namespace, verdict: str) -> int:
    if verdict == "reject" and not args.reason:
        raise CommandError("reject needs --reason (the requester sees it)", code=2)
    body = {"reason": args.reason} if args.reason else None
    with _gateway(args) as http:
        state = _call(http, "POST", f"/approvals/{args.request_id}/{verdict}", json=body)
    progress = ""
    if state["status"] == "pending":
        progress = f" ({len(state['approvals'])} of {state['required_approvals']} approvals)"
    print(f"approval {args.request_id}: {state['status']}{progress}")
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    return _decide(args, "approve")


def cmd_reject(args: argparse.Namespace) -> int:
    return _decide(args, "reject")


# -- the command line ------------------------------------------------------------------------


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time; write it like 2026-11-01T00:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add Z or +01:00")
    return moment


def _kube_flags(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """kubectl's global flags. Like kubectl, they go before or after the verb and its
    arguments; a verb's parser must not reset what was given before it, so only the top
    parser has defaults."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--kubeconfig", default=default, help="kubeconfig file (default: as kubectl)"
    )
    parser.add_argument("--context", default=default, help="kubeconfig context")
    parser.add_argument("-n", "--namespace", default=default, help="namespace of the resource")


def _gateway_flags(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The gateway's flags, on ``approvals`` and on each of its verbs (either place)."""
    if top:
        defaults: dict[str, Any] = {
            "gateway": None,
            "token": None,
            "request_timeout": 30.0,
        }
    else:
        defaults = dict.fromkeys(("gateway", "token", "request_timeout"), argparse.SUPPRESS)
    parser.add_argument(
        "--gateway",
        default=defaults["gateway"],
        help="gateway URL (default $MUSTER_GATEWAY, else the Muster gateway Service of the "
        "current kube context)",
    )
    parser.add_argument(
        "--token", default=defaults["token"], help="your gateway token (default $MUSTER_TOKEN)"
    )
    parser.add_argument(
        "--request-timeout", type=float, default=defaults["request_timeout"], help="seconds"
    )


def parser() -> argparse.ArgumentParser:
    """The whole command line."""
    top = argparse.ArgumentParser(
        prog="kubectl muster",
        description="Muster's Schedules, approvals and worker versions from kubectl.",
    )
    _kube_flags(top, top=True)
    verbs = top.add_subparsers(dest="verb", required=True, metavar="VERB")

    def schedule_verb(name: str, func: Callable[[argparse.Namespace], int], text: str) -> Any:
        verb = verbs.add_parser(name, help=text, description=text)
        _kube_flags(verb, top=False)
        verb.add_argument("name", help="the Schedule's name")
        verb.add_argument(
            "--timeout",
            type=float,
            default=60.0,
            help="seconds to wait for the operator to act (0: do not wait)",
        )
        verb.set_defaults(func=func)
        return verb

    trigger = schedule_verb("trigger", cmd_trigger, "start one run now")
    trigger.add_argument("--token", help="request token (default: a fresh one); reuse = no-op")
    backfill = schedule_verb("backfill", cmd_backfill, "run the schedule over a past time range")
    backfill.add_argument("--start", type=_moment, required=True, help="2026-11-01T00:00:00Z")
    backfill.add_argument("--end", type=_moment, required=True, help="2026-11-08T00:00:00Z")
    backfill.add_argument(
        "--overlap",
        default="AllowAll",
        choices=get_args(v1alpha1.OverlapPolicy),
    )
    backfill.add_argument("--token", help="request token (default: a fresh one)")
    schedule_verb("suspend", cmd_suspend, "pause the schedule (sets spec.suspend)")
    schedule_verb("resume", cmd_resume, "unpause the schedule (clears spec.suspend)")
    describe = verbs.add_parser(
        "describe", help="Temporal's view of a Schedule (reads Temporal; TEMPORAL_ADDRESS)"
    )
    _kube_flags(describe, top=False)
    describe.add_argument("name")
    describe.add_argument("-o", "--output", choices=["text", "json"], default="text")
    describe.set_defaults(func=cmd_describe)

    versions = verbs.add_parser(
        "versions",
        help="each worker's builds: state, ramp, running workflows, pods, replay gate",
        description="The builds of each WorkerDeployment, from its status: state (Starting, "
        "Inactive, Ramping, Current, Draining, Drained), ramp, running and pinned workflows, "
        "pods, pollers, replay gate.",
    )
    _kube_flags(versions, top=False)
    versions.add_argument("name", nargs="?", help="a WorkerDeployment (default: all)")
    versions.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace's workers"
    )
    versions.add_argument("-o", "--output", choices=["text", "json"], default="text")
    versions.set_defaults(func=cmd_versions)

    approvals = verbs.add_parser("approvals", help="approval requests, through the gateway")
    _kube_flags(approvals, top=False)
    _gateway_flags(approvals, top=True)
    which = approvals.add_subparsers(dest="approvals_verb", required=True, metavar="VERB")

    def approvals_verb(name: str, text: str) -> argparse.ArgumentParser:
        verb = which.add_parser(name, help=text, description=text)
        _kube_flags(verb, top=False)
        _gateway_flags(verb, top=False)
        return verb

    listing = approvals_verb("list", "requests you asked for or may decide")
    listing.add_argument("--status", help="pending, approved, rejected, ...")
    listing.add_argument("--policy")
    listing.add_argument("--approver", help="waiting for this user")
    listing.add_argument("--limit", type=int)
    listing.add_argument("-o", "--output", choices=["text", "json"], default="text")
    listing.set_defaults(func=cmd_approvals_list)
    approve = approvals_verb("approve", "approve a request as yourself")
    approve.add_argument("request_id")
    approve.add_argument("--reason")
    approve.set_defaults(func=cmd_approve)
    reject = approvals_verb("reject", "reject a request as yourself (--reason needed)")
    reject.add_argument("request_id")
    reject.add_argument("--reason")
    reject.set_defaults(func=cmd_reject)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``kubectl-muster``."""
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
