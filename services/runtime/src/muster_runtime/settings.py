"""Typed settings for every Muster process, read from the environment.

The Temporal connection uses Temporal's standard variables (``TEMPORAL_ADDRESS``,
``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS*``). Everything else a
service reads has a per-service prefix, nested with ``__``
(``MUSTER_CANARY_HTTP__PORT=9101``). Invalid values stop a process at start with one line
per problem that names the variable and says what is wrong.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as _PydanticSettingsError

Port = Annotated[int, Field(ge=1, le=65535)]

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})$")


class SettingsError(Exception):
    """Raised when the environment holds settings a process cannot start with.

    ``problems`` holds one human-readable line per invalid variable.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def parse_host_port(value: str) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 hosts in brackets) and check the port's range."""
    match = _HOST_PORT.match(value.strip())
    if not match:
        raise ValueError("expected host:port, for example localhost:7233")
    port = int(match.group("port"))
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1-65535")
    return match.group("host"), port


def _read_pem(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"file {path} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a directory, expected a PEM file") from None
    except PermissionError:
        raise ValueError(f"file {path} is not readable (permission denied)") from None
    except OSError as exc:
        raise ValueError(f"file {path} cannot be read: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise ValueError(f"file {path} is not PEM (no '-----BEGIN' line)")
    return data


class TemporalSettings(BaseSettings):
    """How to reach the Temporal frontend; the variables Temporal's CLI and SDKs use."""

    model_config = SettingsConfigDict(
        env_prefix="TEMPORAL_", extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    address: str = "localhost:7233"
    """host:port of the Temporal frontend."""
    namespace: str = Field(default="default", min_length=1)
    """Temporal namespace."""
    api_key: SecretStr | None = None
    """API key (sent as a bearer token); turns TLS on unless TEMPORAL_TLS=false."""
    tls: bool | None = None
    """Force TLS on or off; unset means on when an API key or TLS material is given."""
    tls_client_cert_path: Path | None = None
    """PEM file with the mTLS client certificate."""
    tls_client_cert_data: SecretStr | None = None
    """The mTLS client certificate as PEM text (instead of the path)."""
    tls_client_key_path: Path | None = None
    """PEM file with the mTLS client private key."""
    tls_client_key_data: SecretStr | None = None
    """The mTLS client private key as PEM text (instead of the path)."""
    tls_server_ca_cert_path: Path | None = None
    """PEM file with the CA that signed the server certificate (private CAs)."""
    tls_server_ca_cert_data: SecretStr | None = None
    """The server CA certificate as PEM text (instead of the path)."""
    tls_server_name: str | None = None
    """Server name for SNI and certificate verification, when it differs from the host."""
    tls_disable_host_verification: bool = False
    """Not supported by the Python SDK; setting it true is an error."""

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        parse_host_port(value)
        return value.strip()

    @field_validator("tls_client_cert_path", "tls_client_key_path", "tls_server_ca_cert_path")
    @classmethod
    def _check_pem_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            _read_pem(value)
        return value

    @field_validator("tls_disable_host_verification")
    @classmethod
    def _check_host_verification(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "disabling host verification is not supported by the Python SDK; set "
                "TEMPORAL_TLS_SERVER_NAME to the name in the server certificate instead"
            )
        return value

    @model_validator(mode="after")
    def _check_tls_pairs(self) -> Self:
        for what, path, data in (
            ("client certificate", self.tls_client_cert_path, self.tls_client_cert_data),
            ("client key", self.tls_client_key_path, self.tls_client_key_data),
            ("server CA certificate", self.tls_server_ca_cert_path, self.tls_server_ca_cert_data),
        ):
            if path is not None and data is not None:
                raise ValueError(f"the {what} is given both as a path and as data; set only one")
        has_cert = self.client_cert() is not None
        has_key = self.client_key() is not None
        if has_cert != has_key:
            raise ValueError(
                "mTLS needs both TEMPORAL_TLS_CLIENT_CERT_* and TEMPORAL_TLS_CLIENT_KEY_*; "
                "only one of them is set"
            )
        if self.tls is False and (has_cert or self.server_ca_cert() is not None):
            raise ValueError("TEMPORAL_TLS=false but TLS certificates are configured")
        return self

    @staticmethod
    def _material(path: Path | None, data: SecretStr | None) -> bytes | None:
        if path is not None:
            return _read_pem(path)
        if data is not None:
            return data.get_secret_value().encode()
        return None

    def client_cert(self) -> bytes | None:
        """The mTLS client certificate, from its file or its data variable."""
        return self._material(self.tls_client_cert_path, self.tls_client_cert_data)

    def client_key(self) -> bytes | None:
        """The mTLS client private key, from its file or its data variable."""
        return self._material(self.tls_client_key_path, self.tls_client_key_data)

    def server_ca_cert(self) -> bytes | None:
        """The CA that signs the server's certificate, when not a public one."""
        return self._material(self.tls_server_ca_cert_path, self.tls_server_ca_cert_data)

    def tls_enabled(self) -> bool:
        """Explicit ``TEMPORAL_TLS`` wins; otherwise TLS is on with an API key or any cert."""
        if self.tls is not None:
            return self.tls
        return (
            self.api_key is not None
            or self.client_cert() is not None
            or self.server_ca_cert() is not None
            or self.tls_server_name is not None
        )


class HttpSettings(BaseModel):
    """The process's own HTTP endpoint: ``/metrics``, ``/healthz``, ``/readyz``."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    host: str = "0.0.0.0"  # noqa: S104 - probes and scrapes come from outside the pod
    """Address the health/metrics server binds."""
    port: Port = 9090
    """Port of /metrics, /healthz and /readyz."""


class LogSettings(BaseModel):
    """Log level and format; JSON lines carry trace and span ids."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Minimum level logged."""
    format: Literal["json", "text"] = "json"
    """json: one object per line with trace/span ids; text: for terminals."""

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class WorkerSettings(BaseModel):
    """Task queue and capacity of a Temporal worker, and how long it may drain on stop."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    task_queue: str = Field(min_length=1)
    """Task queue the worker polls."""
    max_concurrent_activities: int = Field(default=100, ge=1)
    """Activities run at once by this process."""
    max_concurrent_workflow_tasks: int = Field(default=100, ge=1)
    """Workflow tasks run at once by this process."""
    max_cached_workflows: int = Field(default=1000, ge=0)
    """Workflows kept in memory between tasks; beyond this, waiting ones are evicted and
    replayed from history when they wake. Bounds worker memory however many wait."""
    graceful_shutdown_seconds: float = Field(default=30.0, ge=0)
    """After SIGTERM, in-flight activities get this long to finish before being cancelled."""
    identity: str | None = None
    """Worker identity shown in Temporal; default <service>-<pid>@<pod or host>."""
    build_id: str | None = Field(default=None, max_length=255)
    """Build id of this worker's code for Worker Versioning: the image tag or digest (the
    chart sets it), the git revision under `muster up`. Unset or empty: the worker runs
    unversioned, and every workflow it polls for replays on whatever code it has."""
    deployment_name: str | None = Field(default=None, max_length=255, pattern=r"^[^.\s]+$")
    """Worker Deployment the worker's versions belong to (no dots); default muster-<service>,
    one per service."""
    promote: Literal["on-start", "external"] = "on-start"
    """on-start: once its pollers are registered, a versioned worker makes its build the
    deployment's current version (new runs go to it; pinned runs stay on their build).
    external: something else does that (the operator, or `temporal worker deployment
    set-current-version`)."""

    @field_validator("build_id", mode="before")
    @classmethod
    def _empty_build_id(cls, value: Any) -> Any:
        # The chart passes an empty value when no image tag is known: unversioned.
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and any(c.isspace() for c in value):
            raise ValueError("a build id has no white space")
        return value


class ServiceSettings(BaseSettings):
    """Settings every Muster process has; each service subclasses with its own prefix."""

    model_config = SettingsConfigDict(
        env_prefix="MUSTER_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
        use_attribute_docstrings=True,
        # MUSTER_X_WORKER__IDENTITY=... changes one field and keeps the other defaults.
        nested_model_default_partial_update=True,
    )

    http: HttpSettings = HttpSettings()
    """Health and metrics endpoint."""
    log: LogSettings = LogSettings()
    """Logging."""


class WorkerServiceSettings(ServiceSettings):
    """Settings of a process that runs a Temporal worker."""

    worker: WorkerSettings
    """Temporal worker."""


S = TypeVar("S", bound=BaseSettings)

_SECRET_FIELDS = {
    "api_key",
    "tls_client_cert_data",
    "tls_client_key_data",
    "tls_server_ca_cert_data",
}


def env_var_name(settings_cls: type[BaseSettings], loc: tuple[int | str, ...]) -> str:
    """The environment variable a validation error location comes from."""
    prefix = str(settings_cls.model_config.get("env_prefix", "")).upper()
    delimiter = settings_cls.model_config.get("env_nested_delimiter") or "__"
    parts = [str(part).upper() for part in loc if not isinstance(part, int)]
    if not parts:
        return f"{prefix.rstrip('_')} settings"
    return prefix + delimiter.join(parts)


def _field_help(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """The description of the field a location names (what to put in a missing variable)."""
    info = None
    for part in loc:
        if isinstance(part, int) or model is None:
            return ""
        info = model.model_fields.get(str(part))
        if info is None:
            return ""
        annotation = info.annotation
        nested = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        model = annotation if nested else None  # type: ignore[assignment]
    return " ".join((info.description or "").split()) if info is not None else ""


def _describe(settings_cls: type[BaseSettings], error: Any) -> str:
    loc: tuple[int | str, ...] = tuple(error.get("loc", ()))
    message = str(error.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if not loc:
        return f"{env_var_name(settings_cls, ())}: {message}"
    name = env_var_name(settings_cls, loc)
    shown = ""
    if loc[-1] not in _SECRET_FIELDS and error.get("type") != "missing":
        value = error.get("input")
        if isinstance(value, (str, int, float)):
            shown = f"={value!r}"
    if error.get("type") == "missing":
        what = _field_help(settings_cls, loc)
        return f"{name} is required but not set" + (f"; it takes: {what}" if what else "")
    return f"{name}{shown}: {message}"


def load_settings(settings_cls: type[S], **overrides: Any) -> S:
    """Build settings from the environment, turning validation errors into SettingsError."""
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        raise SettingsError([_describe(settings_cls, err) for err in exc.errors()]) from None
    except _PydanticSettingsError as exc:
        # pydantic-settings raises this for values it cannot decode, e.g. malformed JSON.
        cause = exc.__cause__
        detail = f" ({cause})" if cause else ""
        raise SettingsError([f"{exc}{detail}"]) from None


def pod_identity() -> str:
    """A worker identity that names the pod (or host) and process."""
    host = os.environ.get("POD_NAME") or os.uname().nodename
    return f"{os.getpid()}@{host}"
