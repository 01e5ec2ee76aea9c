"""Notification text: any title becomes one safe header line (RFC 2047 for non-ASCII), the
full text goes into the body, an address that is none is undeliverable, and the webhook
payload's header block is one line too."""

from __future__ import annotations

import email
import email.policy

import pytest

from muster_approval.notify import (
    SmtpConfig,
    Undeliverable,
    body_text,
    build_email,
    one_line,
    slack_payload,
)

SMTP = SmtpConfig(host="127.0.0.1", port=25, sender="muster@example.com")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("Line one\nLine two", "Line one Line two"),
        ("CR\rLF\r\nend", "CR LF end"),
        ("tab\tand  spaces", "tab and spaces"),
        ("bell\x07 and nul\x00", "bell and nul"),
        ("line\u2028separator\u2029paragraph", "line separator paragraph"),
        ("bidi \u202eevil\u202c", "bidi evil"),
        ("Grüße ✓ 申請", "Grüße ✓ 申請"),
        ("lone \ud800 surrogate", "lone surrogate"),
        ("", ""),
    ],
)
def test_one_line(text: str, line: str) -> None:
    assert one_line(text) == line


def test_one_line_cuts_long_text_with_an_ellipsis() -> None:
    cut = one_line("word " * 100, limit=20)
    assert len(cut) == 20
    assert cut.endswith("\u2026")


def test_body_keeps_lines_and_replaces_what_no_charset_encodes() -> None:
    assert body_text("a\r\nb\rc\nd\te") == "a\nb\nc\nd\te"
    assert body_text("bell\x07 \ud800") == "bell\ufffd \ufffd"


@pytest.mark.parametrize(
    "subject",
    [
        "Approval needed: Line one\nLine two",
        "Approval needed: \r\nBcc: victim@example.com",
        "Approval needed: Grüße \u2013 申請 ✓",
        "Approval needed: " + "x" * 5000,
        "Approval needed: \x00\x1b[31m\ud800",
    ],
)
def test_any_subject_makes_a_sendable_message(subject: str) -> None:
    message = build_email(SMTP, "alice@example.com", subject, f"{subject}\nmore", "r-1:level-0")
    wire = message.as_bytes()
    assert all(len(line) <= 998 for line in wire.split(b"\n"))
    parsed = email.message_from_bytes(wire, policy=email.policy.default)
    assert "\n" not in str(parsed["Subject"])
    assert str(parsed["Subject"]) == one_line(subject)
    assert parsed["Bcc"] is None  # no header smuggled in through the title
    assert [str(a) for a in parsed["To"].addresses] == ["alice@example.com"]
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content().startswith(body_text(subject).split("\n")[0])


def test_non_ascii_subjects_are_encoded_words() -> None:
    wire = build_email(SMTP, "alice@example.com", "Grüße", "body", "k").as_bytes()
    subject = next(line for line in wire.split(b"\n") if line.startswith(b"Subject:"))
    assert b"=?utf-8?" in subject


@pytest.mark.parametrize(
    "address", ["not an address", "alice@", "a\nb@example.com", "Ünï@example.com"]
)
def test_an_address_that_is_none_is_undeliverable(address: str) -> None:
    with pytest.raises(Undeliverable, match=r"e-mail address|cannot be encoded"):
        build_email(SMTP, address, "subject", "body", "k")


def test_the_webhook_header_is_one_line() -> None:
    payload = slack_payload("Approval needed: a\nb", ["a", "b"], {"event": "requested"})
    assert payload["text"] == "Approval needed: a b"
    assert payload["blocks"][0]["text"]["text"] == "Approval needed: a b"
