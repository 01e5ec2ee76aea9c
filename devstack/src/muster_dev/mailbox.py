"""A local mailbox for the embedded stack: a real SMTP server that keeps what it receives.

``muster up`` runs it so approval notifications have somewhere to go on a laptop; its
HTTP API lists the messages (``GET /messages``) and each one is also written as an
``.eml`` file under ``.state/mailbox``. In production, point ``MUSTER_APPROVAL_SMTP__*``
at your mail relay instead.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI, Query
from pydantic import BaseModel, ConfigDict
from pydantic_settings import SettingsConfigDict

from muster_runtime.http import ApiSettings, HttpServiceSettings, http_main
from muster_runtime.service import ServiceProcess, StartupError
from muster_runtime.settings import Port, TemporalSettings


class SmtpListen(BaseModel):
    """Where the SMTP side listens."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    host: str = "127.0.0.1"
    """Address the SMTP server binds."""
    port: Port = 2525
    """SMTP port."""


class MailboxSettings(HttpServiceSettings):
    """``MUSTER_MAILBOX_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="MUSTER_MAILBOX_")

    api: ApiSettings = ApiSettings(host="127.0.0.1", port=8025)
    """HTTP API listing the messages."""
    smtp: SmtpListen = SmtpListen()
    """SMTP listener."""
    store_dir: Path | None = None
    """Folder for .eml copies (default: $MUSTER_STATE_DIR/mailbox, if set)."""


@dataclass
class Mailbox:
    """Received messages, in memory and on disk."""

    store: Path | None
    messages: list[dict[str, Any]] = field(default_factory=list)
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def handle_DATA(  # noqa: N802 - aiosmtpd's handler protocol
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        number = next(self.numbers)
        body = parsed.get_body(preferencelist=("plain",))
        entry = {
            "id": number,
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "subject": str(parsed.get("Subject", "")),
            "message_id": str(parsed.get("Message-ID", "")),
            "idempotency_key": str(parsed.get("X-Muster-Idempotency-Key", "")),
            "date": str(parsed.get("Date", "")),
            "body": body.get_content() if body is not None else "",
        }
        self.messages.append(entry)
        if self.store is not None:
            self.store.mkdir(parents=True, exist_ok=True)
            (self.store / f"{number:06d}.eml").write_bytes(raw)
        return "250 Message accepted for delivery"


def create_app(mailbox: Mailbox) -> FastAPI:
    """The HTTP side."""
    app = FastAPI(title="Muster local mailbox", version="1")

    @app.get("/messages")
    async def messages(to: str | None = Query(default=None)) -> list[dict[str, Any]]:
        """Messages received, oldest first, optionally for one recipient."""
        if to is None:
            return list(mailbox.messages)
        return [m for m in mailbox.messages if to in m["to"]]

    @app.delete("/messages", status_code=204)
    async def clear() -> None:
        """Forget every message (the .eml files stay)."""
        mailbox.messages.clear()

    return app


async def build(
    process: ServiceProcess, settings: MailboxSettings, _: TemporalSettings | None
) -> Any:
    """Start the SMTP listener and return the HTTP app."""
    store = settings.store_dir
    if store is None and os.environ.get("MUSTER_STATE_DIR"):
        store = Path(os.environ["MUSTER_STATE_DIR"]) / "mailbox"
    mailbox = Mailbox(store)
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(
            lambda: SMTP(mailbox, hostname="muster-mailbox"),
            host=settings.smtp.host,
            port=settings.smtp.port,
        )
    except OSError as exc:
        raise StartupError(
            f"MUSTER_MAILBOX_SMTP__PORT={settings.smtp.port}: cannot listen: {exc.strerror}"
        ) from None
    process.health.set("smtp", ok=True, detail=f"SMTP on {settings.smtp.host}:{settings.smtp.port}")

    async def close_on_stop() -> None:
        await process.stop_requested.wait()
        server.close()

    process.spawn(close_on_stop())
    return create_app(mailbox)


def main() -> int:
    """Entry point: ``python -m muster_dev.mailbox``."""
    return http_main("mailbox", MailboxSettings, build, extra_checks=("smtp",))


if __name__ == "__main__":
    from muster_runtime.shutdown import exit_now

    exit_now(main())
