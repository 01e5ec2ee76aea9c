"""``infra/otel/collector.yaml`` is a configuration the real OpenTelemetry Collector accepts:
``otelcol-muster validate`` (the collector's own code, built from its Go modules by ``make
chart-tools`` with exactly the components the config uses) checks every receiver,
processor, exporter and pipeline in it, and refuses a broken copy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.chart.support import BIN, ROOT

pytestmark = pytest.mark.chart

CONFIG = ROOT / "infra" / "otel" / "collector.yaml"


def validate(config: Path) -> subprocess.CompletedProcess[str]:
    binary = BIN / "otelcol-muster"
    assert binary.exists(), f"{binary} is missing: run `make chart-tools`"
    return subprocess.run([str(binary), "validate", f"--config={config}"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_the_collector_accepts_musters_config() -> None:
    result = validate(CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_collector_refuses_a_broken_config(tmp_path: Path) -> None:
    document = yaml.safe_load(CONFIG.read_text())
    document["service"]["pipelines"]["traces"]["exporters"].append("otlp/nowhere")
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(document))
    result = validate(broken)
    assert result.returncode != 0
    assert "otlp/nowhere" in result.stdout + result.stderr
    document = yaml.safe_load(CONFIG.read_text())
    document["processors"]["batch"]["send_batch_sizee"] = 10
    broken.write_text(yaml.safe_dump(document))
    result = validate(broken)
    assert result.returncode != 0
    assert "send_batch_sizee" in result.stdout + result.stderr
