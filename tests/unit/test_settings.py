"""Settings: defaults, Temporal's standard variables, TLS material checks, per-service
prefixes with nested overrides, and the one-line-per-problem errors a bad environment gets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from muster_runtime.canary.worker import CanarySettings
from muster_runtime.settings import (
    SettingsError,
    TemporalSettings,
    load_settings,
    parse_host_port,
)

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def problems(exc: pytest.ExceptionInfo[SettingsError]) -> str:
    return "\n".join(exc.value.problems)


def test_defaults_reach_a_local_dev_server(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings(TemporalSettings)
    assert settings.address == "localhost:7233"
    assert settings.namespace == "default"
    assert settings.tls_enabled() is False


def test_reads_temporal_standard_variables(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TEMPORAL_ADDRESS", "temporal-frontend.temporal:7233")
    clean_env.setenv("TEMPORAL_NAMESPACE", "orders")
    clean_env.setenv("TEMPORAL_API_KEY", "s3cret")
    settings = load_settings(TemporalSettings)
    assert settings.address == "temporal-frontend.temporal:7233"
    assert settings.namespace == "orders"
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "s3cret"
    # An API key turns TLS on unless TEMPORAL_TLS says otherwise.
    assert settings.tls_enabled() is True
    clean_env.setenv("TEMPORAL_TLS", "false")
    assert load_settings(TemporalSettings).tls_enabled() is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("localhost:7233", ("localhost", 7233)),
        ("10.0.0.1:1", ("10.0.0.1", 1)),
        ("[::1]:7233", ("[::1]", 7233)),
    ],
)
def test_parse_host_port_accepts(value: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("localhost", "expected host:port"),
        ("http://localhost:7233", "expected host:port"),
        ("localhost:70000", "port 70000 is out of range"),
        ("localhost:0", "port 0 is out of range"),
        (":7233", "expected host:port"),
    ],
)
def test_malformed_address_names_the_variable(
    clean_env: pytest.MonkeyPatch, value: str, message: str
) -> None:
    clean_env.setenv("TEMPORAL_ADDRESS", value)
    with pytest.raises(SettingsError) as exc:
        load_settings(TemporalSettings)
    assert len(exc.value.problems) == 1
    line = exc.value.problems[0]
    assert line.startswith(f"TEMPORAL_ADDRESS={value!r}: ")
    assert message in line


def test_tls_file_problems_are_explained(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    not_pem = tmp_path / "cert.txt"
    not_pem.write_text("hello")
    clean_env.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(tmp_path / "missing.pem"))
    clean_env.setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", str(not_pem))
    clean_env.setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", str(tmp_path))
    with pytest.raises(SettingsError) as exc:
        load_settings(TemporalSettings)
    text = problems(exc)
    assert "TEMPORAL_TLS_CLIENT_CERT_PATH=" in text
    assert "missing.pem does not exist" in text
    assert "TEMPORAL_TLS_CLIENT_KEY_PATH=" in text
    assert "is not PEM" in text
    assert "TEMPORAL_TLS_SERVER_CA_CERT_PATH=" in text
    assert "is a directory" in text
    assert len(exc.value.problems) == 3


def test_unreadable_tls_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A FIFO with no writer can't be read as a file without blocking; use a path whose
    # parent is a file instead, which fails with ENOTDIR like an unreadable mount would.
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    clean_env.setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", str(blocker / "ca.pem"))
    with pytest.raises(SettingsError) as exc:
        load_settings(TemporalSettings)
    assert "TEMPORAL_TLS_SERVER_CA_CERT_PATH=" in problems(exc)
    assert "cannot be read" in problems(exc)


def test_mtls_needs_cert_and_key(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text(PEM)
    clean_env.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(cert))
    with pytest.raises(SettingsError) as exc:
        load_settings(TemporalSettings)
    assert "mTLS needs both" in problems(exc)


def test_path_and_data_are_exclusive(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(PEM)
    clean_env.setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", str(ca))
    clean_env.setenv("TEMPORAL_TLS_SERVER_CA_CERT_DATA", PEM)
    with pytest.raises(SettingsError) as exc:
        load_settings(TemporalSettings)
    assert "both as a path and as data" in problems(exc)


def test_tls_false_with_certificates_is_contradictory(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(PEM)
    clean_env.setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", str(ca))
    clean_env.setenv("TEMPORAL_TLS", "false")
    with pytest.raises(SettingsError) as exc:
        load_settings(TemporalSettings)
    assert "TEMPORAL_TLS=false but TLS certificates are configured" in problems(exc)


def test_disabling_host_verification_is_refused_with_an_alternative(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("TEMPORAL_TLS_DISABLE_HOST_VERIFICATION", "true")
    with pytest.raises(SettingsError) as exc:
        load_settings(TemporalSettings)
    assert "TEMPORAL_TLS_SERVER_NAME" in problems(exc)


def test_secrets_never_appear_in_errors(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TEMPORAL_TLS_CLIENT_KEY_DATA", "-----BEGIN PRIVATE KEY-----TOPSECRET")
    with pytest.raises(SettingsError) as exc:
        load_settings(TemporalSettings)
    assert "TOPSECRET" not in problems(exc)


def test_service_prefix_and_nested_partial_override(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MUSTER_CANARY_HTTP__PORT", "9311")
    clean_env.setenv("MUSTER_CANARY_WORKER__GRACEFUL_SHUTDOWN_SECONDS", "5")
    clean_env.setenv("MUSTER_CANARY_LOG__LEVEL", "debug")
    settings = load_settings(CanarySettings)
    assert settings.http.port == 9311
    assert settings.log.level == "DEBUG"
    assert settings.worker.graceful_shutdown_seconds == 5.0
    # Overriding one nested field keeps the service's other defaults.
    assert settings.worker.task_queue == "muster-canary"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MUSTER_CANARY_HTTP__PORT", "99999", "less than or equal to 65535"),
        ("MUSTER_CANARY_HTTP__PORT", "http", "valid integer"),
        ("MUSTER_CANARY_LOG__FORMAT", "xml", "'json' or 'text'"),
        ("MUSTER_CANARY_WORKER__MAX_CONCURRENT_ACTIVITIES", "0", "greater than or equal to 1"),
        ("MUSTER_CANARY_WORKER__GRACEFUL_SHUTDOWN_SECONDS", "-1", "greater than or equal to 0"),
    ],
)
def test_bad_service_values_name_the_variable(
    clean_env: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(SettingsError) as exc:
        load_settings(CanarySettings)
    assert len(exc.value.problems) == 1
    assert exc.value.problems[0].startswith(f"{variable}={value!r}: ")
    assert message in exc.value.problems[0]


def test_a_service_with_bad_settings_exits_2_with_one_line_each(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "TEMPORAL_ADDRESS": "localhost",
        "MUSTER_CANARY_HTTP__PORT": "99999",
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(tmp_path / "nope.pem"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "muster_runtime.canary"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert len(lines) == 3, result.stderr
    assert all(line.startswith("muster-canary: configuration error: ") for line in lines)
    assert any("MUSTER_CANARY_HTTP__PORT='99999'" in line for line in lines)
    assert any("TEMPORAL_ADDRESS='localhost'" in line for line in lines)
    assert any("TEMPORAL_TLS_SERVER_CA_CERT_PATH=" in line for line in lines)
