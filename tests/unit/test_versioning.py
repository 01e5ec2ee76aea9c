"""Worker Versioning declarations and options: every Muster workflow type declares a
behaviour with its reason, one worker's types share one, a worker without a build id gets
no deployment options (it runs unversioned), and bad build ids and deployment names are
refused with a clear message."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import VersioningBehavior

from muster_approval.workflows import Approval
from muster_fulfillment.workflows import OrderFulfillment
from muster_runtime.canary.workflows import CanaryPing
from muster_runtime.service import StartupError, deployment_options, worker_version
from muster_runtime.settings import WorkerServiceSettings, WorkerSettings
from muster_runtime.versioning import WorkerVersion, declare, declared, worker_behavior
from muster_scheduling.workflows import WORKFLOWS as SCHEDULED

PINNED, AUTO = VersioningBehavior.PINNED, VersioningBehavior.AUTO_UPGRADE

WORKERS: dict[str, list[type]] = {
    "approval": [Approval],
    "fulfillment": [OrderFulfillment],
    "scheduling": list(SCHEDULED),
    "canary": [CanaryPing],
}


def test_every_workflow_type_declares_its_behaviour_and_why() -> None:
    chosen = {
        w.__temporal_workflow_definition.name: declared(w)  # type: ignore[attr-defined]
        for workers in WORKERS.values()
        for w in workers
    }
    assert {name: d.behavior for name, d in chosen.items()} == {
        "Approval": AUTO,
        "OrderFulfillment": PINNED,
        "DailyReport": PINNED,
        "DataSync": PINNED,
        "HealthCheck": PINNED,
        "ApprovalReminders": PINNED,
        "CanaryPing": PINNED,
    }
    assert all(len(d.reason) > 40 for d in chosen.values())


@pytest.mark.parametrize("service", sorted(WORKERS))
def test_each_worker_has_one_behaviour(service: str) -> None:
    worker_behavior(WORKERS[service])


@workflow.defn(name="Undeclared", sandboxed=False)
class Undeclared:
    @workflow.run
    async def run(self) -> None:
        return None


@declare(AUTO, "waits for weeks in this test")
@workflow.defn(name="Waits", sandboxed=False)
class Waits:
    @workflow.run
    async def run(self) -> None:
        return None


def test_mixed_or_undeclared_behaviours_are_refused() -> None:
    with pytest.raises(ValueError, match="declares no versioning behaviour"):
        worker_behavior([Undeclared])
    with pytest.raises(ValueError, match=r"CanaryPing \(pinned\), Waits \(auto-upgrade\)"):
        worker_behavior([CanaryPing, Waits])
    with pytest.raises(ValueError, match="say why"):
        declare(PINNED, " ")
    with pytest.raises(ValueError, match="PINNED or AUTO_UPGRADE"):
        declare(VersioningBehavior.UNSPECIFIED, "no")


def test_a_worker_without_a_build_id_runs_unversioned() -> None:
    assert deployment_options(WorkerVersion("muster-approval", None), [Approval]) == {}


def test_a_versioned_worker_gets_its_deployment_and_behaviour() -> None:
    (config,) = deployment_options(WorkerVersion("muster-approval", "git-abc"), [Approval]).values()
    assert config.version.deployment_name == "muster-approval"
    assert config.version.build_id == "git-abc"
    assert config.use_worker_versioning
    assert config.default_versioning_behavior == AUTO
    with pytest.raises(StartupError, match="different versioning behaviours"):
        deployment_options(WorkerVersion("x", "1"), [Approval, OrderFulfillment])


class Settings(WorkerServiceSettings):
    worker: WorkerSettings = WorkerSettings(task_queue="q")


def test_deployment_name_defaults_per_service_and_build_id_comes_from_settings() -> None:
    assert worker_version("approval", Settings()) == WorkerVersion("muster-approval", None)
    settings = Settings(worker=WorkerSettings(task_queue="q", build_id="sha256:0a1b",
                                              deployment_name="shop-approval"))  # fmt: skip
    assert worker_version("approval", settings) == WorkerVersion("shop-approval", "sha256:0a1b")
    assert str(worker_version("approval", settings)) == "shop-approval.sha256:0a1b"
    assert WorkerSettings(task_queue="q", build_id="  ").build_id is None


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("deployment_name", "muster.approval", "should match pattern"),
        ("build_id", "v 1", "a build id has no white space"),
        ("build_id", "x" * 256, "at most 255 characters"),
        ("promote", "always", "'on-start' or 'external'"),
    ],
)
def test_bad_versioning_settings_say_what_is_wrong(field: str, value: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        WorkerSettings.model_validate({"task_queue": "q", field: value})
