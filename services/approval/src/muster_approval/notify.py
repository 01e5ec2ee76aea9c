"""Sending notifications: e-mail over SMTP and a Slack-compatible JSON webhook.

Neither SMTP nor a webhook can promise exactly-once delivery when a sender crashes after
sending and before recording it, so each message carries a stable identity derived from
the request and the event: e-mail gets a deterministic ``Message-ID`` (and an
``X-Muster-Idempotency-Key`` header), the webhook an ``Idempotency-Key`` header and an
``event_id`` field, so receivers can drop the rare repeat.
"""

from __future__ import annotations

import asyncio
import hashlib
import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import httpx


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to send mail."""

    host: str
    port: int
    sender: str
    starttls: bool = False
    use_ssl: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float = 15.0


def message_id(idempotency_key: str, recipient: str, domain: str = "muster.local") -> str:
    """The same key and recipient always give the same Message-ID."""
    digest = hashlib.sha256(f"{idempotency_key}|{recipient}".encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def build_email(
    config: SmtpConfig, to: str, subject: str, body: str, idempotency_key: str
) -> EmailMessage:
    """One plain-text message to one recipient."""
    message = EmailMessage()
    message["From"] = config.sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = message_id(idempotency_key, to)
    message["X-Muster-Idempotency-Key"] = idempotency_key
    message.set_content(body)
    return message


def _send_blocking(config: SmtpConfig, messages: list[EmailMessage]) -> None:
    context = ssl.create_default_context()
    smtp_class = smtplib.SMTP_SSL if config.use_ssl else smtplib.SMTP
    kwargs: dict[str, Any] = {"timeout": config.timeout}
    if config.use_ssl:
        kwargs["context"] = context
    with smtp_class(config.host, config.port, **kwargs) as smtp:
        if config.starttls and not config.use_ssl:
            smtp.starttls(context=context)
        if config.username:
            smtp.login(config.username, config.password or "")
        for message in messages:
            smtp.send_message(message)


async def send_emails(config: SmtpConfig, messages: list[EmailMessage]) -> None:
    """Deliver messages over one SMTP session (in a thread: smtplib blocks)."""
    if messages:
        await asyncio.to_thread(_send_blocking, config, messages)


def slack_payload(subject: str, lines: list[str], event: dict[str, Any]) -> dict[str, Any]:
    """A message Slack (and most chat webhooks) render, plus Muster's structured event."""
    return {
        "text": subject,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": subject[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}},
        ],
        "muster": event,
    }


async def post_webhook(
    client: httpx.AsyncClient, url: str, payload: dict[str, Any], idempotency_key: str
) -> None:
    """POST the payload; anything but 2xx is an error (and Temporal retries)."""
    response = await client.post(url, json=payload, headers={"Idempotency-Key": idempotency_key})
    if response.status_code >= 300:
        raise RuntimeError(f"webhook answered {response.status_code}: {response.text[:200]}")
