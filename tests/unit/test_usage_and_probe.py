"""The command line every Muster process shares (``--help`` lists its variables, any other
argument is refused with exit status 2), and ``python -m muster_runtime.probe``, which the
chart's ``helm test`` runs: it waits for URLs to answer 2xx and says which did not."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from muster_runtime import probe
from muster_runtime.usage import handle_command_line, usage_text

pytestmark = pytest.mark.unit

GATEWAY_SETTINGS = "muster_gateway.settings:GatewaySettings"


def test_help_lists_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        handle_command_line(
            "python -m muster_gateway", "Muster gateway", GATEWAY_SETTINGS, ["--help"]
        )
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m muster_gateway [--help]")
    for variable in ("TEMPORAL_ADDRESS", "TEMPORAL_API_KEY", "MUSTER_GATEWAY_API__PORT",
                     "MUSTER_GATEWAY_AUTH__TOKENS_FILE"):  # fmt: skip
        assert f"  {variable}  (" in out
    assert "(integer, default 8080)" in out


def test_other_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        handle_command_line("python -m muster_gateway", "x", GATEWAY_SETTINGS, ["--port", "80"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "unexpected argument '--port'" in err
    assert "python -m muster_gateway --help" in err


def test_no_arguments_run_the_process() -> None:
    handle_command_line("python -m muster_gateway", "x", GATEWAY_SETTINGS, [])


def test_usage_text_wraps_descriptions() -> None:
    text = usage_text("p", "Muster thing", GATEWAY_SETTINGS)
    assert max(len(line) for line in text.splitlines()) <= 100


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path.split("?")[0] == "/ok" else 503
        body = b"fine" if status == 200 else b"temporal: failing"
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_probe_passes_when_every_url_answers(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert probe.main(["--timeout", "5", f"{server}/ok", f"{server}/ok?again"]) == 0
    assert capsys.readouterr().out.count("ok ") == 2


def test_probe_names_what_failed(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert probe.main(["--timeout", "1.5", f"{server}/ok", f"{server}/down"]) == 1
    out = capsys.readouterr().out
    assert f"ok {server}/ok" in out
    assert f"FAILED {server}/down: 503 temporal: failing" in out


def test_probe_refuses_non_http_urls() -> None:
    with pytest.raises(SystemExit) as exited:
        probe.main(["file:///etc/passwd"])
    assert exited.value.code == 2
