"""No production setting defaults to something in the checkout (examples, demo tokens, the
chart's files): a pod started with a forgotten variable must stop with a message naming it,
never run on demo credentials. Walks every production process's settings class, nested
groups included, and checks each default; and proves a missing required variable is
reported with what to put in it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from muster_dev.services import OTHER_PROCESSES, SERVICES
from muster_gateway.settings import GatewaySettings
from muster_runtime.settings import SettingsError, TemporalSettings, load_settings
from muster_runtime.usage import load_settings_class

ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL = {p.name for p in ROOT.iterdir() if p.name != ".git"} | {".state", ".cache"}

PRODUCTION_SETTINGS = sorted(
    {spec.settings for spec in SERVICES if not spec.module.startswith("muster_dev")}
    | {path for _, path in OTHER_PROCESSES}
)


def defaults(model: type[BaseModel], value: Any = None, prefix: str = "") -> list[tuple[str, Any]]:
    """Every (dotted field, default) of a settings class, descending into nested groups."""
    found: list[tuple[str, Any]] = []
    for name, info in model.model_fields.items():
        if value is not None:
            default = getattr(value, name)
        elif info.default is PydanticUndefined and info.default_factory is None:
            continue
        else:
            default = info.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            found += defaults(type(default), default, f"{prefix}{name}.")
        else:
            found.append((f"{prefix}{name}", default))
    return found


def points_into_checkout(value: Any) -> bool:
    """Whether a default names a file or folder of the repository."""
    items = value if isinstance(value, (list, tuple, set)) else [value]
    for item in items:
        if not isinstance(item, (str, Path)) or not str(item):
            continue
        path = Path(item)
        if path.is_absolute():
            if path.resolve().is_relative_to(ROOT):
                return True
        elif path.parts and path.parts[0] in TOP_LEVEL and len(path.parts) > 1:
            return True
    return False


def test_the_walk_finds_what_it_must() -> None:
    # The checker itself: a class with a repository default is caught.
    class Bad(BaseSettings):
        tokens: Path = Path("examples/gateway/tokens.yaml")
        fine: Path = Path("/etc/muster/secrets")

    flagged = [name for name, value in defaults(Bad) if points_into_checkout(value)]
    assert flagged == ["tokens"]
    assert len(PRODUCTION_SETTINGS) >= 6


@pytest.mark.parametrize(
    "path", [TemporalSettings.__module__ + ":TemporalSettings", *PRODUCTION_SETTINGS]
)
def test_no_default_points_into_the_repository(path: str) -> None:
    settings_cls = load_settings_class(path)
    bad = [(name, value) for name, value in defaults(settings_cls) if points_into_checkout(value)]
    assert not bad, (
        f"{path} has defaults inside the repository: {bad}; make the setting required "
        "(no default) so a process without it stops at start, and pass the example path "
        "from the dev stack (devstack/src/muster_dev/services.py)"
    )


@pytest.mark.parametrize(
    ("path", "variable", "hint"),
    [
        (
            "muster_gateway.settings:GatewaySettings",
            "MUSTER_GATEWAY_POLICIES_DIR",
            "ApprovalPolicy",
        ),
        ("muster_gateway.settings:GatewaySettings", "MUSTER_GATEWAY_DIRECTORY_FILE", "who is who"),
        (
            "muster_approval.worker:ApprovalSettings",
            "MUSTER_APPROVAL_POLICIES_DIR",
            "ApprovalPolicy",
        ),
        ("muster_approval.worker:ApprovalSettings", "MUSTER_APPROVAL_DIRECTORY_FILE", "who is who"),
        ("muster_approval.worker:ApprovalSettings", "MUSTER_APPROVAL_PUBLIC_URL", "approver page"),
    ],
)
def test_a_missing_required_variable_says_what_to_put_in_it(
    monkeypatch: pytest.MonkeyPatch, path: str, variable: str, hint: str
) -> None:
    monkeypatch.delenv(variable, raising=False)
    with pytest.raises(SettingsError) as caught:
        load_settings(load_settings_class(path))
    (line,) = [p for p in caught.value.problems if p.startswith(variable)]
    assert "is required but not set" in line
    assert hint in line


def test_the_gateway_refuses_token_mode_without_a_tokens_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MUSTER_GATEWAY_POLICIES_DIR", str(tmp_path))
    monkeypatch.setenv("MUSTER_GATEWAY_DIRECTORY_FILE", str(tmp_path / "directory.yaml"))
    monkeypatch.delenv("MUSTER_GATEWAY_AUTH__TOKENS_FILE", raising=False)
    with pytest.raises(SettingsError) as caught:
        load_settings(load_settings_class("muster_gateway.settings:GatewaySettings"))
    assert "MUSTER_GATEWAY_AUTH__TOKENS_FILE is required" in str(caught.value)
    monkeypatch.setenv("MUSTER_GATEWAY_AUTH__MODE", "proxy")
    settings = load_settings(GatewaySettings)
    assert settings.auth.tokens_file is None


@pytest.mark.parametrize("value", ["0", "-1", "61", "soon"])
def test_the_gateway_refuses_a_state_read_timeout_out_of_range(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
) -> None:
    monkeypatch.setenv("MUSTER_GATEWAY_POLICIES_DIR", str(tmp_path))
    monkeypatch.setenv("MUSTER_GATEWAY_DIRECTORY_FILE", str(tmp_path / "directory.yaml"))
    monkeypatch.setenv("MUSTER_GATEWAY_AUTH__MODE", "proxy")
    monkeypatch.setenv("MUSTER_GATEWAY_STATE_READ_TIMEOUT", value)
    with pytest.raises(SettingsError) as caught:
        load_settings(GatewaySettings)
    (line,) = caught.value.problems
    assert line.startswith("MUSTER_GATEWAY_STATE_READ_TIMEOUT"), line
    monkeypatch.setenv("MUSTER_GATEWAY_STATE_READ_TIMEOUT", "0.5")
    assert load_settings(GatewaySettings).state_read_timeout == 0.5
