"""The rollout planner (:mod:`muster_operator.rollouts`) without a cluster or a server: build
ids and names, the Deployments and gate Jobs it makes, and every decision of a rollout (wait
for pollers, the replay gate, at once or ramped, restore a previous build, keep old builds
while pinned workflows run, scale down and delete after the sunset delays, roll back on an
alert, and nothing destructive while Temporal cannot be asked); and the WorkerDeployment
model's rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from muster_api import v1alpha1
from muster_operator.reconcile import Want
from muster_operator.rollouts import (
    BUILD_LABEL,
    GATE_LABEL,
    MAX_DEPLOYMENT_NAME,
    WORKER_LABEL,
    Alert,
    GateJob,
    GateVerdict,
    Observed,
    Pods,
    Routing,
    RoutingChange,
    Version,
    Workflows,
    build_id,
    deployment_manifest,
    deployment_name,
    gate_job_manifest,
    image_tag,
    label_value,
    plan,
    routed,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def resource(**spec: Any) -> v1alpha1.WorkerDeployment:
    body: dict[str, Any] = {
        "settingsPrefix": "MUSTER_APPROVAL_",
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/component": "approval"}},
            "spec": {
                "containers": [
                    {
                        "name": "approval",
                        "image": "registry.example.com/muster-approval:0.2.0",
                        "env": [{"name": "MUSTER_APPROVAL_WORKER__BUILD_ID", "value": "old"}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 9090}},
                    }
                ]
            },
        },
        "rollout": {"replayGate": {"workflows": ["muster_approval.workflows:Approval"]}},
        "sunset": {"scaledownDelay": "10m", "deleteDelay": "1h"},
    }
    body.update(spec)
    return v1alpha1.WorkerDeployment.model_validate(
        {
            "apiVersion": "muster.io/v1alpha1",
            "kind": "WorkerDeployment",
            "metadata": {"name": "muster-approval", "namespace": "shop"},
            "spec": body,
        }
    )


def pods(build: str, replicas: int = 1, age: timedelta = timedelta(minutes=30)) -> Pods:
    return Pods(
        name=f"muster-approval-{build}",
        build_id=build,
        replicas=replicas,
        ready=replicas,
        template_hash=None,
        created=NOW - age,
        uid=f"uid-{build}",
    )


def seen(
    wd: v1alpha1.WorkerDeployment,
    *,
    builds: dict[str, Pods] | None = None,
    versions: dict[str, Version] | None = None,
    routing: Routing | None = None,
    pollers: dict[str, int] | None = None,
    workflows: dict[str, Workflows] | None = None,
    **extra: Any,
) -> Observed:
    return Observed(
        now=NOW,
        pods=builds or {},
        versions=versions if versions is not None else {},
        routing=routing or Routing(),
        pollers=pollers or {},
        workflows=workflows or {},
        **extra,
    )


def reason(done: Any) -> str:
    return str(next(c for c in done.conditions if c.type == "Ready").reason)


# -- names and manifests ----------------------------------------------------------------------


def test_build_id_is_the_image_tag_and_a_hash_of_the_whole_template() -> None:
    wd = resource()
    build = build_id(wd)
    assert build.startswith("0.2.0-")
    assert len(build) == len("0.2.0-") + 10
    changed = resource(template={**wd.spec.template.model_dump(by_alias=True), "metadata": {}})
    assert build_id(changed) != build, "any change to the pods is a new build"
    assert build_id(resource(buildId="sha-abc")) == "sha-abc"
    assert image_tag("r.example/a/muster-approval@sha256:0123456789abcdef0123") == "0123456789ab"
    assert image_tag("localhost:5000/muster-approval") == "muster-approval"
    assert image_tag("localhost:5000/muster-approval:dev") == "dev"


def test_names_and_labels_fit_kubernetes() -> None:
    wd = resource()
    long_build = "x" * 63
    name = deployment_name(wd, long_build)
    assert len(name) <= MAX_DEPLOYMENT_NAME
    assert name != deployment_name(wd, "y" * 63)
    dotted = deployment_name(wd, "0.2.0-abc")
    assert dotted.startswith("muster-approval-")
    assert "." not in dotted
    assert deployment_name(wd, "v2") == "muster-approval-v2"
    assert label_value("v2") == "v2"
    assert label_value("Build With Spaces").startswith("h-")


def test_the_deployment_runs_the_build_as_a_version_promoted_by_the_operator() -> None:
    wd = resource()
    manifest = deployment_manifest(wd, "v2", "uid-1", 3)
    assert manifest["metadata"]["name"] == "muster-approval-v2"
    assert manifest["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert manifest["spec"]["replicas"] == 3
    selector = manifest["spec"]["selector"]["matchLabels"]
    assert selector == {WORKER_LABEL: "muster-approval", BUILD_LABEL: "v2"}
    template = manifest["spec"]["template"]
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "approval"
    env = {e["name"]: e["value"] for e in template["spec"]["containers"][0]["env"]}
    assert env == {
        "MUSTER_APPROVAL_WORKER__BUILD_ID": "v2",
        "MUSTER_APPROVAL_WORKER__DEPLOYMENT_NAME": "muster-approval",
        "MUSTER_APPROVAL_WORKER__PROMOTE": "external",
    }


def test_the_gate_job_replays_in_the_builds_image_without_being_a_worker() -> None:
    wd = resource()
    job = gate_job_manifest(wd, "v2", ("muster-approval-v2", "uid-d"), sample_per_type=7)
    assert job["metadata"]["ownerReferences"][0]["name"] == "muster-approval-v2"
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "approval-replay-gate"
    assert pod["metadata"]["labels"][GATE_LABEL] == "true"
    assert BUILD_LABEL not in pod["metadata"]["labels"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "registry.example.com/muster-approval:0.2.0"
    assert "readinessProbe" not in container
    assert pod["spec"]["restartPolicy"] == "Never"
    assert container["command"] == ["python"]
    args = container["args"]
    assert args[:2] == ["-m", "muster_runtime.replay"]
    assert args[args.index("--workflows") + 1] == "muster_approval.workflows:Approval"
    assert args[args.index("--running-in") + 1] == "muster-approval"
    assert args[args.index("--verdict-for") + 1] == "muster-approval:v2"
    assert args[args.index("--sample") + 1] == "7"


# -- a rollout, step by step ------------------------------------------------------------------


def test_the_first_build_is_created_then_made_current_once_it_polls() -> None:
    wd = resource(buildId="v1")
    first = plan(wd, seen(wd))
    assert first.create
    assert reason(first) == "WaitingForPods"
    waiting = plan(wd, seen(wd, builds={"v1": pods("v1")}))
    assert not waiting.create
    assert waiting.routing is None
    assert reason(waiting) == "WaitingForPollers"
    registered = seen(
        wd,
        builds={"v1": pods("v1")},
        versions={"v1": Version("v1", "Inactive")},
        pollers={"v1": 1},
    )
    done = plan(wd, registered)
    assert done.routing is not None
    assert done.routing.action == "set-current"
    assert done.routing.build_id == "v1"
    assert not done.gate_job, "nothing runs yet: nothing to replay"


def rolling(
    wd: v1alpha1.WorkerDeployment,
    *,
    gate: GateVerdict | None = None,
    job: GateJob | None = None,
    routing: Routing | None = None,
    **extra: Any,
) -> Observed:
    return seen(
        wd,
        builds={"v1": pods("v1"), "v2": pods("v2", age=timedelta(minutes=1))},
        versions={
            "v1": Version("v1", "Current", current_since=NOW - timedelta(days=1), last_current=NOW),
            "v2": Version("v2", "Inactive", gate=gate),
        },
        routing=routing or Routing(current="v1"),
        pollers={"v1": 2, "v2": 1},
        workflows={"v1": Workflows(30, 10), "v2": Workflows(0, 0)},
        gate_jobs={"v2": job} if job else {},
        **extra,
    )


def test_a_new_build_waits_for_its_replay_gate() -> None:
    wd = resource(buildId="v2")
    started = plan(wd, rolling(wd))
    assert started.gate_job
    assert started.routing is None
    assert reason(started) == "ReplayGateRunning"
    running = plan(wd, rolling(wd, job=GateJob("gate", NOW - timedelta(minutes=1))))
    assert not running.gate_job
    assert running.routing is None
    passed = plan(wd, rolling(wd, gate=GateVerdict(True, "12 replayed", 12)))
    assert passed.routing is not None
    assert passed.routing.action == "set-current"
    assert passed.routing.build_id == "v2"
    assert [e[1] for e in passed.events] == ["Promoted"]


def test_the_gate_starts_with_the_builds_pods_not_after_them() -> None:
    wd = resource(buildId="v2")
    fresh = seen(
        wd,
        builds={"v1": pods("v1")},
        versions={"v1": Version("v1", "Current", last_current=NOW)},
        routing=Routing(current="v1"),
        pollers={"v1": 1},
        workflows={"v1": Workflows(3, 0)},
    )
    done = plan(wd, fresh)
    assert done.create
    assert done.gate_job
    assert done.routing is None
    assert reason(done) == "WaitingForPods"
    restoring = seen(wd, builds={"v1": pods("v1"), "v2": pods("v2")},
                     versions={"v1": Version("v1", "Current"),
                               "v2": Version("v2", "Draining", last_current=NOW)},
                     routing=Routing(current="v1"))  # fmt: skip
    assert not plan(wd, restoring).gate_job, "a build that was current before has no gate"


def test_a_build_that_does_not_replay_never_becomes_current() -> None:
    wd = resource(buildId="v2")
    failed = plan(wd, rolling(wd, gate=GateVerdict(False, "Approval does not replay", 3)))
    assert failed.routing is None
    assert reason(failed) == "ReplayGateFailed"
    assert failed.events
    assert failed.events[0][:2] == ("Warning", "ReplayGateFailed")
    again = plan(wd, rolling(wd, gate=GateVerdict(False, "x", 3), ready_reason="ReplayGateFailed"))
    assert not again.events, "the Event is posted once, when the condition turns"
    assert "muster-approval-v2" not in again.scale
    assert "muster-approval-v2" not in again.delete
    stuck = plan(wd, rolling(wd, job=GateJob("gate", NOW - timedelta(hours=1))))
    assert reason(stuck) == "ReplayGateTimedOut"
    assert stuck.routing is None
    crashed = plan(wd, rolling(wd, job=GateJob("gate", NOW, failed="BackoffLimitExceeded")))
    assert reason(crashed) == "ReplayGateError"
    assert crashed.routing is None


def test_a_progressive_rollout_ramps_through_its_steps() -> None:
    steps = [{"rampPercentage": 10, "pause": "5m"}, {"rampPercentage": 50, "pause": "5m"}]
    wd = resource(
        buildId="v2", rollout={"strategy": "Progressive", "steps": steps,
                               "replayGate": {"workflows": []}},
    )  # fmt: skip
    first = plan(wd, rolling(wd))
    assert first.routing is not None
    assert (first.routing.action, first.routing.percentage) == ("set-ramping", 10)
    early = Routing(current="v1", ramping="v2", percentage=10, ramp_changed=NOW)
    assert plan(wd, rolling(wd, routing=early)).routing is None
    later = Routing(
        current="v1", ramping="v2", percentage=10, ramp_changed=NOW - timedelta(minutes=6)
    )
    second = plan(wd, rolling(wd, routing=later)).routing
    assert second is not None
    assert (second.action, second.percentage) == ("set-ramping", 50)
    last = Routing(
        current="v1", ramping="v2", percentage=50, ramp_changed=NOW - timedelta(minutes=6)
    )
    done = plan(wd, rolling(wd, routing=last)).routing
    assert done is not None
    assert (done.action, done.build_id) == ("set-current", "v2")


def test_pointing_back_to_a_previous_build_restores_it_at_once() -> None:
    wd = resource(buildId="v1")
    observed = seen(
        wd,
        builds={"v1": pods("v1"), "v2": pods("v2")},
        versions={
            "v1": Version("v1", "Draining", last_current=NOW - timedelta(minutes=5)),
            "v2": Version("v2", "Current", current_since=NOW - timedelta(minutes=5)),
        },
        routing=Routing(current="v2"),
        pollers={"v1": 1, "v2": 1},
        workflows={"v1": Workflows(5, 5), "v2": Workflows(8, 3)},
    )
    done = plan(wd, observed)
    assert done.routing is not None
    assert (done.routing.action, done.routing.build_id) == (
        "set-current",
        "v1",
    )
    assert not done.gate_job, "a build that was current before needs no gate"
    assert [e[1] for e in done.events] == ["Restored"]


def old_build(status: Any, *, pinned: int, drained_ago: timedelta | None = None) -> Observed:
    wd = resource(buildId="v2")
    return seen(
        wd,
        builds={"v1": pods("v1", replicas=2), "v2": pods("v2")},
        versions={
            "v1": Version(
                "v1",
                status,
                last_current=NOW - timedelta(hours=2),
                drained_since=NOW - drained_ago if drained_ago else None,
            ),
            "v2": Version("v2", "Current", current_since=NOW - timedelta(hours=2)),
        },
        routing=Routing(current="v2"),
        pollers={"v1": 2, "v2": 1},
        workflows={"v1": Workflows(pinned, pinned), "v2": Workflows(1, 0)},
    )


def test_an_old_build_keeps_its_pods_until_it_drained_and_the_delays_passed() -> None:
    wd = resource(buildId="v2")
    draining = plan(wd, old_build("Draining", pinned=4))
    assert not draining.scale
    assert not draining.delete
    confused = plan(wd, old_build("Drained", pinned=1, drained_ago=timedelta(hours=5)))
    assert not confused.scale, "a pinned workflow still runs on it"
    assert not confused.delete, "a pinned workflow still runs on it"
    fresh = plan(wd, old_build("Drained", pinned=0, drained_ago=timedelta(minutes=1)))
    assert not fresh.scale
    assert not fresh.delete
    down = plan(wd, old_build("Drained", pinned=0, drained_ago=timedelta(minutes=11)))
    assert down.scale == {"muster-approval-v1": 0}
    assert not down.delete
    assert [e[1] for e in down.events] == ["ScaledDown"]
    gone = plan(wd, old_build("Drained", pinned=0, drained_ago=timedelta(hours=2)))
    assert gone.delete == ["muster-approval-v1"]


def test_builds_that_never_got_work_are_deleted_at_once() -> None:
    wd = resource(buildId="v3")
    observed = seen(
        wd,
        builds={"v1": pods("v1"), "v2": pods("v2"), "v3": pods("v3")},
        versions={
            "v1": Version("v1", "Current", current_since=NOW - timedelta(days=1)),
            "v2": Version("v2", "Inactive", gate=GateVerdict(False, "no")),
        },
        routing=Routing(current="v1"),
        pollers={"v1": 1, "v2": 1},
        workflows={"v1": Workflows(3, 3), "v2": Workflows(0, 0)},
    )
    done = plan(wd, observed)
    assert done.delete == ["muster-approval-v2"]
    replaced = seen(wd, builds={"v1": pods("v1"), "v3": pods("v3"), "v9": pods("v9")},
                    versions={"v1": Version("v1", "Current")}, routing=Routing(current="v1"),
                    pollers={"v1": 1}, workflows={"v1": Workflows(0, 0)})  # fmt: skip
    assert plan(wd, replaced).delete == ["muster-approval-v9"], "never polled: no workflows"


def test_without_temporal_nothing_is_scaled_down_or_routed() -> None:
    wd = resource(buildId="v2")
    done = plan(wd, Observed(now=NOW, pods={"v1": pods("v1"), "v9": pods("v9")}, versions=None))
    assert done.create
    assert not done.scale
    assert not done.delete
    assert done.routing is None
    assert reason(done) == "TemporalUnavailable"
    assert {v["state"] for v in done.versions} == {"Unknown"}


def test_manual_strategy_leaves_routing_to_people() -> None:
    wd = resource(buildId="v2", rollout={"strategy": "Manual"})
    done = plan(wd, rolling(wd))
    assert done.routing is None
    assert reason(done) == "WaitingForPromotion"


def test_a_new_target_stops_the_ramp_of_the_one_before() -> None:
    wd = resource(buildId="v3")
    observed = rolling(wd, routing=Routing(current="v1", ramping="v2", percentage=20))
    done = plan(wd, observed)
    assert done.routing is not None
    assert done.routing.action == "unset-ramping"


# -- automatic rollback ----------------------------------------------------------------------


def alert(build: str, name: str = "MusterCompensationsFailing") -> Alert:
    return Alert(name, build, "Compensations of step payment keep failing")


WATCHED = Want("AlertsWatched", "True", "PrometheusAnswers")


def test_an_alert_for_the_ramping_build_stops_its_ramp() -> None:
    steps = [{"rampPercentage": 50, "pause": "1h"}]
    wd = resource(buildId="v2", rollout={"strategy": "Progressive", "steps": steps})
    ramping = Routing(current="v1", ramping="v2", percentage=50, ramp_changed=NOW)
    quiet = plan(wd, rolling(wd, routing=ramping, alerts=[alert("v1")], alerts_note=WATCHED))
    assert quiet.routing is None, "an alert of another build"
    assert quiet.rollback is None, "an alert of another build"
    done = plan(wd, rolling(wd, routing=ramping, alerts=[alert("v2")], alerts_note=WATCHED))
    assert done.routing is not None
    assert done.routing.action == "unset-ramping"
    assert done.rollback is not None
    assert done.rollback[0] == "v2"
    assert "MusterCompensationsFailing" in done.rollback[1]
    assert reason(done) == "RolledBack"
    rolled = next(c for c in done.conditions if c.type == "RolledBack")
    assert (rolled.status, rolled.reason) == ("True", "MusterCompensationsFailing")
    assert ("Warning", "RolledBack") in [e[:2] for e in done.events]
    shown = next(v for v in done.versions if v["buildId"] == "v2")
    assert "MusterCompensationsFailing" in shown["rolledBack"], "status says so at once"


def test_an_alert_soon_after_promotion_makes_the_previous_build_current() -> None:
    wd = resource(buildId="v2")
    observed = seen(
        wd,
        builds={"v1": pods("v1", replicas=0), "v2": pods("v2")},
        versions={
            "v1": Version("v1", "Draining", last_current=NOW - timedelta(minutes=3)),
            "v2": Version(
                "v2", "Current", current_since=NOW - timedelta(minutes=3), last_current=NOW
            ),
        },
        routing=Routing(current="v2"),
        pollers={"v1": 0, "v2": 1},
        workflows={"v1": Workflows(2, 2), "v2": Workflows(4, 1)},
        alerts=[alert("v2", "MusterNonDeterminismError")],
        alerts_note=WATCHED,
    )
    done = plan(wd, observed)
    assert done.routing is not None
    assert (done.routing.action, done.routing.build_id) == ("set-current", "v1")
    assert done.routing.allow_no_pollers, "v1's pods come back while it is current"
    assert done.scale["muster-approval-v1"] == 1
    late = seen(
        wd,
        builds=dict(observed.pods),
        versions={**observed.versions,  # type: ignore[dict-item]
                  "v2": Version("v2", "Current", current_since=NOW - timedelta(hours=1))},
        routing=Routing(current="v2"),
        alerts=[alert("v2", "MusterNonDeterminismError")],
    )  # fmt: skip
    assert plan(wd, late).rollback is None, "outside the window the build is not watched"


def test_a_rolled_back_build_stays_back_and_is_not_recreated() -> None:
    wd = resource(buildId="v2")
    observed = seen(
        wd,
        builds={"v1": pods("v1")},
        versions={
            "v1": Version("v1", "Current", last_current=NOW),
            "v2": Version("v2", "Drained", last_current=NOW, rolled_back="MusterX fired"),
        },
        routing=Routing(current="v1"),
        pollers={"v1": 1},
        workflows={"v1": Workflows(0, 0)},
    )
    done = plan(wd, observed)
    assert not done.create
    assert done.routing is None
    assert reason(done) == "RolledBack"


# -- the model ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"rollout": {"strategy": "Progressive"}}, "a Progressive rollout needs steps"),
        (
            {"rollout": {"strategy": "Progressive", "steps": [
                {"rampPercentage": 50, "pause": "1m"}, {"rampPercentage": 10, "pause": "1m"}]}},
            "rampPercentage must rise",
        ),
        ({"sunset": {"scaledownDelay": "2h", "deleteDelay": "1h"}}, "deleteDelay must not"),
        ({"container": "sidecar"}, "container 'sidecar' is not one of"),
        ({"settingsPrefix": "muster_"}, "settingsPrefix"),
        ({"rollout": {"replayGate": {"workflows": ["not a class"]}}}, "workflows"),
    ],
)  # fmt: skip
def test_the_model_refuses_what_cannot_roll_out(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        resource(**spec)


def test_a_dotted_name_needs_a_deployment_name() -> None:
    body = resource().model_dump(by_alias=True, mode="json")
    body["metadata"]["name"] = "approval.v2"
    with pytest.raises(ValidationError, match="has dots"):
        v1alpha1.WorkerDeployment.model_validate(body)
    body["spec"]["deploymentName"] = "approval-v2"
    assert v1alpha1.WorkerDeployment.model_validate(body).deployment_name == "approval-v2"


def test_status_shows_the_routing_the_reconcile_made() -> None:
    ramping = Routing(current="v1", ramping="v2", percentage=50)
    assert routed(ramping, None) == ("v1", "v2", 50)
    assert routed(ramping, RoutingChange("unset-ramping", None)) == ("v1", None, 0.0)
    assert routed(ramping, RoutingChange("set-current", "v2")) == ("v2", None, 0.0)
    assert routed(ramping, RoutingChange("set-ramping", "v2", percentage=90)) == ("v1", "v2", 90)
    assert routed(Routing(current="v1"), RoutingChange("set-current", "v0")) == ("v0", None, 0.0)
