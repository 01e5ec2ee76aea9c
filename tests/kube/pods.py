"""Pods for the kube tier, which has an API server but no kubelet: :class:`ProcessNode` runs
what the operator's Deployments and Jobs ask for as local processes, the way a node would
run their containers.

It reads each Deployment the operator made for a WorkerDeployment, starts ``spec.replicas``
processes of its container (the image names which module and which code, see
:class:`Image`) with the container's environment, and stops them when the Deployment is
scaled down or deleted. A replay gate's Job runs once, with the container's own command, and
a Job that fails is marked Failed, as the Job controller would. Each process gets its own
metrics port, listed for Prometheus' file-based discovery with the pod's name, as a
PodMonitor would scrape it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from muster_dev.process import ManagedProcess, free_port
from muster_operator.rollouts import GATE_LABEL, WORKER_LABEL
from muster_runtime.polling import wait_until

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Image:
    """What an image reference runs: ``python -m module`` (its entrypoint), with its code
    from ``overlay`` (a folder put first on PYTHONPATH) when the build's code differs from
    the checkout's."""

    module: str
    port_variable: str
    overlay: Path | None = None


@dataclass
class Pod:
    """One running "container"."""

    name: str
    deployment: str
    process: ManagedProcess
    port: int
    started: float = field(default_factory=time.monotonic)


def _env(container: Mapping[str, Any]) -> dict[str, str]:
    return {
        item["name"]: str(item["value"])
        for item in container.get("env") or []
        if "value" in item and item.get("value") is not None
    }


def _plain(model: Any) -> dict[str, Any]:
    """A Kubernetes client model as the JSON the API server sent."""
    found: dict[str, Any] = client.ApiClient().sanitize_for_serialization(model)  # type: ignore[no-untyped-call]
    return found


class ProcessNode:
    """Runs the pods of one namespace's worker Deployments and gate Jobs as processes."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        images: Mapping[str, Image],
        logs: Path,
        *,
        targets_file: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.apps = client.AppsV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.namespace = namespace
        self.images = dict(images)
        self.logs = logs
        self.extra_env = dict(extra_env or {})
        self.pods: dict[str, list[Pod]] = {}
        self.jobs: dict[str, ManagedProcess] = {}
        self.job_results: dict[str, int] = {}
        self.timeline: list[tuple[float, str, int]] = []
        """(time.monotonic(), Deployment, processes running) at every change."""
        self.targets_file = targets_file or logs / "targets.json"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.errors: list[str] = []
        logs.mkdir(parents=True, exist_ok=True)
        self.targets_file.parent.mkdir(parents=True, exist_ok=True)
        self._write_targets()

    # -- the loop -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="process-node", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        with self._lock:
            for pods in self.pods.values():
                for pod in pods:
                    pod.process.stop(grace=5)
            for process in self.jobs.values():
                process.stop(grace=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as exc:  # kept for the test to report; the loop goes on
                log.exception("process node")
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(0.3)

    def sync(self) -> None:
        """One pass: every Deployment gets its replicas, every new gate Job runs."""
        with self._lock:
            deployments = self.apps.list_namespaced_deployment(
                self.namespace, label_selector=WORKER_LABEL
            ).items
            seen = set()
            for deployment in deployments:
                name = str(deployment.metadata.name if deployment.metadata else "")
                seen.add(name)
                self._scale(name, deployment, deployment.spec.replicas or 0)
            for name in [n for n in self.pods if n not in seen]:
                self._scale(name, None, 0)
            for job in self.batch.list_namespaced_job(
                self.namespace, label_selector=GATE_LABEL
            ).items:
                self._job(job)

    # -- Deployments --------------------------------------------------------------------

    def _image(self, container: Mapping[str, Any]) -> Image:
        image = self.images.get(container["image"])
        assert image is not None, f"no Image for {container['image']} in the test's node"
        return image

    def _scale(self, name: str, deployment: Any, replicas: int) -> None:
        pods = self.pods.setdefault(name, [])
        changed = False
        pods[:] = [p for p in pods if p.process.running() or self._died(p)]
        while len(pods) > replicas:
            pod = pods.pop()
            pod.process.stop(grace=10)
            changed = True
        while len(pods) < replicas:
            assert deployment is not None
            pods.append(self._start_pod(name, deployment, len(pods)))
            changed = True
        if changed:
            self.timeline.append((time.monotonic(), name, len(pods)))
            self._write_targets()

    def _died(self, pod: Pod) -> bool:
        self.errors.append(f"pod {pod.name} exited {pod.process.returncode}:\n{pod.process.tail()}")
        return False

    def _start_pod(self, name: str, deployment: Any, index: int) -> Pod:
        template = _plain(deployment.spec.template)
        (container,) = template["spec"]["containers"]
        image = self._image(container)
        port = free_port()
        pod_name = f"{name}-{index}-{port}"
        env = {**_env(container), **self.extra_env, image.port_variable: str(port)}
        env["POD_NAME"] = pod_name
        if image.overlay is not None:
            env["PYTHONPATH"] = os.pathsep.join(
                [str(image.overlay), *filter(None, [os.environ.get("PYTHONPATH")])]
            )
        process = ManagedProcess(
            pod_name,
            [sys.executable, "-m", image.module],
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            log_path=self.logs / f"{pod_name}.log",
        )
        process.start()
        return Pod(pod_name, name, process, port)

    # -- Jobs -----------------------------------------------------------------------------

    def _job(self, job: Any) -> None:
        name = job.metadata.name
        process = self.jobs.get(name)
        if process is None:
            spec = _plain(job.spec.template)
            (container,) = spec["spec"]["containers"]
            image = self._image(container)
            command = [*container.get("command", []), *container.get("args", [])]
            assert command[0] == "python", command
            env = {**_env(container), **self.extra_env}
            if image.overlay is not None:
                env["PYTHONPATH"] = str(image.overlay)
            process = ManagedProcess(
                name,
                [sys.executable, *command[1:]],
                env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
                log_path=self.logs / f"job-{name}.log",
            )
            process.start()
            self.jobs[name] = process
            return
        if process.running() or name in self.job_results:
            return
        code = process.returncode or 0
        self.job_results[name] = code
        if code != 0:
            # What the Job controller does once the pods failed: the Job is Failed.
            moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            conditions = [
                {"type": kind, "status": "True", "reason": "BackoffLimitExceeded",
                 "message": f"the gate's container exited {code}",
                 "lastTransitionTime": moment, "lastProbeTime": moment}
                for kind in ("FailureTarget", "Failed")
            ]  # fmt: skip
            self.batch.patch_namespaced_job_status(
                name, self.namespace, {"status": {"startTime": moment, "conditions": conditions}}
            )

    # -- what Prometheus scrapes ----------------------------------------------------------

    def _write_targets(self) -> None:
        groups = [
            {"targets": [f"127.0.0.1:{pod.port}"], "labels": {"pod": pod.name}}
            for pods in self.pods.values()
            for pod in pods
        ]
        temporary = self.targets_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(groups))
        temporary.replace(self.targets_file)

    def running(self, deployment: str) -> int:
        """Processes running for a Deployment now."""
        with self._lock:
            return sum(1 for p in self.pods.get(deployment, []) if p.process.running())

    def ever_ran(self, deployment: str) -> bool:
        return any(name == deployment for _, name, _ in self.timeline)

    def wait(self, check: Callable[[], Any], what: str, timeout: float) -> Any:
        """Poll ``check`` until it returns something truthy, reporting the node's errors."""

        def probe() -> Any:
            assert not self.errors, "\n".join(self.errors)
            return check()

        return wait_until(probe, what=what, timeout=timeout, interval=0.3)
