"""Structured logs: JSON lines with service, level, extras, exceptions, and the current
trace and span ids when logged inside a span."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace import TracerProvider

from muster_runtime.logs import JsonFormatter, TextFormatter


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("fulfillment"))
    logger = logging.getLogger("muster.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_fields_and_extras(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    logger.info("order %s placed", "o-1", extra={"order_id": "o-1", "items": ("a", "b")})
    (entry,) = lines(stream)
    assert entry["msg"] == "order o-1 placed"
    assert entry["level"] == "info"
    assert entry["service"] == "fulfillment"
    assert entry["logger"] == "muster.test.logs"
    assert entry["order_id"] == "o-1"
    assert entry["items"] == ["a", "b"]
    assert "trace_id" not in entry  # no span, no ids
    assert str(entry["ts"]).endswith("+00:00")


def test_opaque_extras_are_left_out(capture: tuple[logging.Logger, io.StringIO]) -> None:
    """A library's settings object (kopf attaches one to every record) is not logged."""

    class Settings:
        def __repr__(self) -> str:
            return "Settings(" + "x" * 5000 + ")"

    logger, stream = capture
    when = datetime(2026, 11, 25, 6, tzinfo=UTC)
    logger.warning(
        "timer stuck",
        extra={"settings": Settings(), "k8s_ref": {"name": "s-1", "obj": Settings()}, "at": when},
    )
    (entry,) = lines(stream)
    assert "settings" not in entry
    assert entry["k8s_ref"] == {"name": "s-1"}
    assert entry["at"] == "2026-11-25 06:00:00+00:00"
    assert len(json.dumps(entry)) < 500


def test_trace_and_span_ids_inside_a_span(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("charge") as span:
        logger.warning("charging")
        context = span.get_span_context()
    (entry,) = lines(stream)
    assert entry["trace_id"] == format(context.trace_id, "032x")
    assert entry["span_id"] == format(context.span_id, "016x")


def test_exceptions_are_one_json_line(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    try:
        raise ValueError("card declined")
    except ValueError:
        logger.exception("payment failed")
    (entry,) = lines(stream)
    assert entry["exc_type"] == "ValueError"
    assert "card declined" in str(entry["exc"])
    assert len(stream.getvalue().splitlines()) == 1


def test_text_format_shows_trace_id() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("s") as span:
        line = TextFormatter().format(record)
        trace_id = format(span.get_span_context().trace_id, "032x")
    assert "hello" in line
    assert f"[trace={trace_id}]" in line
