"""Sending notifications: e-mail over SMTP and a Slack-compatible JSON webhook.

Neither SMTP nor a webhook can promise exactly-once delivery when a sender crashes after
sending and before recording it, so each message carries a stable identity derived from
the request and the event: e-mail gets a deterministic ``Message-ID`` (and an
``X-Muster-Idempotency-Key`` header), the webhook an ``Idempotency-Key`` header and an
``event_id`` field, so receivers can drop the rare repeat.

Any text may reach a message: titles and descriptions are whatever people typed. Headers
get one line of it (line breaks and control characters become spaces, non-ASCII is
encoded by the e-mail policy as RFC 2047 words); the free text itself goes only into the
body. What can never be delivered (an address that is no address, a relay's permanent
5xx refusal, a webhook's 4xx) raises :class:`Undeliverable`, which the activity turns into
a non-retryable failure; everything else is worth retrying.
"""

from __future__ import annotations

import asyncio
import hashlib
import smtplib
import ssl
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import httpx

SUBJECT_LIMIT = 150
"""Characters of a subject line; longer ones are cut with an ellipsis."""


class Undeliverable(Exception):
    """A message that no retry can deliver; the message says why."""


def one_line(text: str, limit: int = SUBJECT_LIMIT) -> str:
    """``text`` made fit for a header: line breaks and other control or format characters
    become spaces, runs of white space one space, and long text ends in an ellipsis."""
    cleaned = "".join(
        " " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") else c for c in text
    )
    line = " ".join(cleaned.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "\u2026"


def body_text(text: str) -> str:
    """Free text fit for a text/plain body: line breaks as ``\\n``, tabs kept, other control
    characters and lone surrogates (which no charset encodes) as U+FFFD."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(
        c if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cs") else "\ufffd" for c in text
    )


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
    """One plain-text message to one recipient, whatever the text; :class:`Undeliverable`
    when the address cannot be one."""
    try:
        recipient = Address(addr_spec=to)
    except (ValueError, TypeError, IndexError) as exc:  # the parser trips on some input
        raise Undeliverable(f"{to!r} is not an e-mail address ({exc})") from None
    if not recipient.domain:
        raise Undeliverable(f"{to!r} is not an e-mail address (no domain)")
    message = EmailMessage()
    message["From"] = config.sender
    message["To"] = recipient
    message["Subject"] = one_line(subject)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = message_id(idempotency_key, to)
    message["X-Muster-Idempotency-Key"] = one_line(idempotency_key, limit=200)
    message.set_content(body_text(body))
    try:
        message.as_bytes()  # fails here, not halfway through an SMTP session
    except (ValueError, UnicodeError) as exc:
        raise Undeliverable(f"the message to {to} cannot be encoded: {exc}") from None
    return message


@dataclass
class Sent:
    """What one SMTP session delivered, and what the relay refused for good."""

    delivered: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


def _text(answer: bytes | str) -> str:
    raw = answer.decode(errors="replace") if isinstance(answer, bytes) else str(answer)
    return one_line(raw, 200)


def _permanent(code: int) -> bool:
    return 500 <= code < 600


def _send_blocking(config: SmtpConfig, messages: list[EmailMessage]) -> Sent:
    sent = Sent()
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
            to = str(message["To"])
            try:
                smtp.send_message(message)
            except smtplib.SMTPRecipientsRefused as exc:
                codes = [code for code, _ in exc.recipients.values()]
                if not all(_permanent(code) for code in codes):
                    raise  # a 4xx: the relay may take it later
                code, text = next(iter(exc.recipients.values()))
                sent.refused[to] = f"{code} {_text(text)}"
                continue  # smtplib has reset the session for the next message
            except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
                if not _permanent(exc.smtp_code):
                    raise
                sent.refused[to] = f"{exc.smtp_code} {_text(exc.smtp_error)}"
                continue
            sent.delivered.append(to)
    return sent


async def send_emails(config: SmtpConfig, messages: list[EmailMessage]) -> Sent:
    """Deliver messages over one SMTP session (in a thread: smtplib blocks). A message the
    relay refuses for good (5xx) is reported in ``refused``; a 4xx or a lost connection
    raises, so the whole notification is retried (Message-IDs make repeats harmless)."""
    if not messages:
        return Sent()
    return await asyncio.to_thread(_send_blocking, config, messages)


def slack_payload(subject: str, lines: list[str], event: dict[str, Any]) -> dict[str, Any]:
    """A message Slack (and most chat webhooks) render, plus Muster's structured event
    (the subject on one line: a header block takes no line breaks)."""
    title = one_line(subject)
    return {
        "text": title,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}},
        ],
        "muster": event,
    }


async def post_webhook(
    client: httpx.AsyncClient, url: str, payload: dict[str, Any], idempotency_key: str
) -> None:
    """POST the payload. A 4xx (other than 408 and 429) means the receiver will never take
    it: :class:`Undeliverable`; any other answer but 2xx is worth retrying."""
    response = await client.post(url, json=payload, headers={"Idempotency-Key": idempotency_key})
    if response.status_code < 300:
        return
    answer = f"webhook answered {response.status_code}: {one_line(response.text, 200)}"
    if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
        raise Undeliverable(answer)
    raise RuntimeError(answer)
