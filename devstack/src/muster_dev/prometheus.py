"""A local Prometheus (Debian's ``prometheus`` package) that scrapes the local stack and
evaluates Muster's alert rules, for ``muster up --prometheus-port`` and the observability
tests. Everything runs on loopback; data lives in the stack's state folder."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from muster_dev.process import ManagedProcess
from muster_dev.temporal import find_tool
from muster_runtime.polling import wait_until


def instant_query(prometheus_url: str, expr: str) -> dict[str, Any]:
    """One instant query through Prometheus' HTTP API: the parsed answer, errors included
    (``{"status": "error", "error": ...}`` for an expression that does not parse)."""
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - http only
            return dict(json.load(answer))
    except urllib.error.HTTPError as exc:
        return dict(json.load(exc))


def prometheus_binary() -> Path:
    """Debian's prometheus (``make prometheus`` installs it)."""
    return find_tool(
        "prometheus", "MUSTER_PROMETHEUS_BIN", "run `make prometheus` (Debian package prometheus)"
    )


@dataclass
class PrometheusConfig:
    """What to scrape: job name -> ``host:port`` targets; which rule files to evaluate."""

    port: int
    data_dir: Path
    targets: Mapping[str, Sequence[str]]
    rule_files: Sequence[Path] = ()
    interval: str = "5s"
    host: str = "127.0.0.1"
    labels: Mapping[str, str] = field(default_factory=dict)
    file_targets: Mapping[str, str] = field(default_factory=dict)
    """Job name -> a glob of JSON target files (Prometheus' file-based discovery), for
    targets that come and go, like a rollout's pods."""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def render(self) -> str:
        """The prometheus.yml for this configuration."""
        scrape = [
            {
                "job_name": job,
                # Temporal's SDK metrics carry their own namespace label (the Temporal
                # namespace), as the chart's PodMonitor keeps them with honorLabels.
                "honor_labels": True,
                "static_configs": [
                    {"targets": list(targets), "labels": {"service": job, **self.labels}}
                ],
            }
            for job, targets in sorted(self.targets.items())
        ]
        scrape += [
            {
                "job_name": job,
                "honor_labels": True,
                "file_sd_configs": [{"files": [pattern], "refresh_interval": "5s"}],
            }
            for job, pattern in sorted(self.file_targets.items())
        ]
        document = {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": scrape,
        }
        return yaml.safe_dump(document, sort_keys=False)


class PrometheusServer:
    """One Prometheus process; ``start()`` returns once it answers ``/-/ready``."""

    def __init__(self, config: PrometheusConfig, *, log_path: Path | None = None) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = config.data_dir / "prometheus.yml"
        self.process = ManagedProcess(
            "prometheus",
            [
                str(prometheus_binary()),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={config.data_dir / 'tsdb'}",
                f"--web.listen-address={config.host}:{config.port}",
                "--web.enable-lifecycle",
            ],
            log_path=log_path or config.data_dir / "prometheus.log",
        )

    def start(self, timeout: float = 60.0) -> None:
        self.config_path.write_text(self.config.render())
        self.process.start()

        def ready() -> bool:
            if not self.process.running():
                raise RuntimeError(f"prometheus exited:\n{self.process.tail()}")
            try:
                with urllib.request.urlopen(f"{self.config.url}/-/ready", timeout=2) as answer:  # noqa: S310
                    return bool(answer.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        wait_until(ready, what=f"Prometheus on {self.config.url}", timeout=timeout, interval=0.2)

    def stop(self) -> None:
        self.process.stop(grace=10)
