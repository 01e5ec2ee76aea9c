"""Structured logging: one JSON object per line, carrying the current trace and span ids.

Temporal's workflow and activity loggers attach their context (workflow id, run id,
activity type) under ``temporal_workflow`` / ``temporal_activity``; those are kept.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any, TextIO
from uuid import UUID

from opentelemetry import trace

# Attributes every LogRecord has; anything else was passed through ``extra=``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}


# Extras of these types are logged as text; other objects (a library's settings object, a
# client) are left out: their repr is not data and can be kilobytes per line (kopf attaches
# its whole OperatorSettings to every record).
_TEXT_TYPES = (datetime, date, timedelta, PurePath, Enum, UUID, Decimal)
_OPAQUE = object()


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {
            str(k): v for k, v in ((k, _jsonable(v)) for k, v in value.items()) if v is not _OPAQUE
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [v for v in (_jsonable(v) for v in value) if v is not _OPAQUE]
    if isinstance(value, _TEXT_TYPES):
        return str(value)
    return _OPAQUE


class JsonFormatter(logging.Formatter):
    """Formats records as JSON lines for log shippers (Loki, Cloud Logging, ...)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "service": self.service,
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                data = _jsonable(value)
                if data is not _OPAQUE:
                    entry[key] = data
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            entry["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-oriented single lines for a terminal, still showing the trace id."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            line += f" [trace={format(span_context.trace_id, '032x')}]"
        return line


def configure_logging(
    service: str, *, level: str = "INFO", fmt: str = "json", stream: TextIO | None = None
) -> None:
    """Route the root logger to one handler on stderr with the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Per-request chatter from HTTP client libraries drowns the useful lines.
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
