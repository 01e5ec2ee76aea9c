"""The gateway's authentication: hashed tokens (re-read when the Secret changes), trusted
proxy headers, signed sessions that end when the token is revoked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from muster_gateway.auth import AuthConfigError, Authenticator, hash_token
from muster_gateway.settings import AuthSettings


def write_tokens(path: Path, users: dict[str, str], *, bump: int = 0) -> None:
    lines = ["tokens:"] + [f"  {user}: {hash_token(token)}" for user, token in users.items()]
    path.write_text("\n".join(lines) + "\n")
    stat = path.stat()  # make the change visible even within one mtime tick
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + bump * 1_000_000_000))


def authenticator(path: Path, mode: str = "tokens") -> Authenticator:
    return Authenticator(AuthSettings(mode=mode, tokens_file=path), b"k" * 32)


def test_tokens_are_checked_against_hashes(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    write_tokens(tokens, {"alice": "s3cret-alice"})
    auth = authenticator(tokens)
    assert "s3cret-alice" not in tokens.read_text()
    caller = auth.from_headers({"authorization": "Bearer s3cret-alice"}, "10.0.0.9")
    assert caller is not None
    assert caller.user == "alice"
    assert auth.from_headers({"authorization": "Bearer wrong"}, "10.0.0.9") is None
    assert auth.from_headers({}, "10.0.0.9") is None


def test_a_changed_tokens_file_is_reloaded_and_a_broken_one_keeps_the_old(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = tmp_path / "tokens.yaml"
    write_tokens(tokens, {"alice": "a1"})
    auth = authenticator(tokens)
    session = auth.session_cookie("alice")
    assert auth.from_session(session) is not None

    write_tokens(tokens, {"bob": "b1"}, bump=1)  # alice's token revoked, bob's added
    assert auth.from_token("b1") is not None
    assert auth.from_token("a1") is None
    assert auth.from_session(session) is None  # her signed-in session ends too

    tokens.write_text("tokens:\n  bob: not-a-hash\n")
    stat = tokens.stat()
    os.utime(tokens, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    caller = auth.from_token("b1")  # nothing already accepted is lost
    assert caller is not None
    assert caller.user == "bob"
    assert "is not 'sha256:<64 hex digits>'" in caplog.text
    assert "keeping the tokens loaded before" in caplog.text


def test_an_unusable_tokens_file_stops_the_start_with_a_clear_message(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("tokens:\n  alice: plain-text-token\n")
    with pytest.raises(AuthConfigError, match=r"python -m muster_gateway\.auth hash"):
        authenticator(tokens)
    with pytest.raises(AuthConfigError, match="tokens file"):
        authenticator(tmp_path / "missing.yaml")


def test_proxy_headers_count_only_from_trusted_networks(tmp_path: Path) -> None:
    auth = authenticator(tmp_path / "unused.yaml", mode="proxy")
    headers = {"x-forwarded-user": "carol", "x-forwarded-groups": "finance, managers"}
    caller = auth.from_headers(headers, "127.0.0.1")
    assert caller is not None
    assert caller.user == "carol"
    assert caller.groups == frozenset({"finance", "managers"})
    assert auth.from_headers(headers, "203.0.113.7") is None  # anyone could send them
    assert auth.from_headers(headers, None) is None
    # In proxy mode a bearer token proves nothing.
    assert auth.from_headers({"authorization": "Bearer x"}, "127.0.0.1") is None


def test_sessions_are_signed_and_expire(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    write_tokens(tokens, {"alice": "a1"})
    auth = authenticator(tokens)
    cookie = auth.session_cookie("alice")
    assert auth.from_session(cookie) is not None
    other = Authenticator(AuthSettings(tokens_file=tokens), b"x" * 32)
    assert other.from_session(cookie) is None  # signed with another key
    assert auth.from_session("garbage") is None
    expired = Authenticator(AuthSettings(tokens_file=tokens, session_hours=1e-9), b"k" * 32)
    assert expired.from_session(expired.session_cookie("alice")) is None
    assert auth.csrf_token("alice") != auth.csrf_token("bob")
