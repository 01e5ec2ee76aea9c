"""Who is calling: bearer tokens (stored hashed) or a trusted proxy's identity headers,
and signed session cookies for the approver page.

``python -m muster_gateway.auth hash TOKEN`` prints the line to put in the tokens file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from muster_gateway.settings import AuthSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    """An authenticated user."""

    user: str
    groups: frozenset[str] = field(default_factory=frozenset)
    via: str = "token"


class TokensFile(BaseModel):
    """``tokens: {user: "sha256:<hex of the token>"}``."""

    model_config = ConfigDict(extra="forbid")

    tokens: dict[str, str] = Field(default_factory=dict)


class AuthConfigError(ValueError):
    """The authentication configuration cannot be used."""


def hash_token(token: str) -> str:
    """What the tokens file stores for a token."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def load_tokens(path: Path) -> dict[str, str]:
    """Map of hash -> user from the tokens file; a clear error if it is unusable."""
    try:
        data = TokensFile.model_validate(yaml.safe_load(path.read_text()) or {})
    except (OSError, yaml.YAMLError) as exc:
        raise AuthConfigError(f"tokens file {path}: {exc}") from None
    except ValidationError as exc:
        raise AuthConfigError(f"tokens file {path}: {exc.errors()[0]['msg']}") from None
    by_hash: dict[str, str] = {}
    for user, digest in data.tokens.items():
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise AuthConfigError(
                f"tokens file {path}: the entry of {user!r} is not 'sha256:<64 hex digits>' "
                "(make one with `python -m muster_gateway.auth hash TOKEN`)"
            )
        by_hash[digest] = user
    return by_hash


class Authenticator:
    """Turns a request's headers and peer address into a Caller (or None)."""

    def __init__(self, settings: AuthSettings, session_key: bytes) -> None:
        self.settings = settings
        self.session_key = session_key
        self._tokens_file = settings.tokens_file if "tokens" in settings.mode else None
        if "tokens" in settings.mode and self._tokens_file is None:
            raise AuthConfigError(
                f"MUSTER_GATEWAY_AUTH__MODE={settings.mode} needs MUSTER_GATEWAY_AUTH__TOKENS_FILE"
            )
        self._tokens = load_tokens(self._tokens_file) if self._tokens_file else {}
        self._tokens_stamp = self._stamp()
        try:
            self.trusted = [ipaddress.ip_network(c) for c in settings.trusted_proxies]
        except ValueError as exc:
            raise AuthConfigError(f"MUSTER_GATEWAY_AUTH__TRUSTED_PROXIES: {exc}") from None

    def _stamp(self) -> int | None:
        if self._tokens_file is None:
            return None
        try:
            return self._tokens_file.stat().st_mtime_ns
        except OSError:
            return None

    @property
    def tokens(self) -> dict[str, str]:
        """Hash -> user, re-read when the file changes (a Secret updated in place); a file
        that became unusable is reported and the tokens loaded before stay in force."""
        if self._tokens_file is None:
            return {}
        stamp = self._stamp()
        if stamp is not None and stamp != self._tokens_stamp:
            self._tokens_stamp = stamp
            try:
                self._tokens = load_tokens(self._tokens_file)
                log.info("tokens file %s reloaded", self._tokens_file)
            except AuthConfigError as exc:
                log.error("%s; keeping the tokens loaded before", exc)  # noqa: TRY400
        return self._tokens

    def from_token(self, token: str) -> Caller | None:
        """The user a bearer token belongs to."""
        digest = hash_token(token)
        for known, user in self.tokens.items():
            if hmac.compare_digest(known, digest):
                return Caller(user=user, via="token")
        return None

    def from_headers(self, headers: dict[str, str], peer: str | None) -> Caller | None:
        """Identity from ``Authorization: Bearer`` or, from a trusted proxy, its headers."""
        authorization = headers.get("authorization", "")
        if "tokens" in self.settings.mode and authorization.lower().startswith("bearer "):
            return self.from_token(authorization[7:].strip())
        if "proxy" in self.settings.mode:
            user = headers.get(self.settings.proxy_user_header.lower())
            if user and self._trusted(peer):
                groups = headers.get(self.settings.proxy_groups_header.lower(), "")
                return Caller(
                    user=user,
                    groups=frozenset(g.strip() for g in groups.split(",") if g.strip()),
                    via="proxy",
                )
        return None

    def _trusted(self, peer: str | None) -> bool:
        if peer is None:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    # -- sessions for the web page ---------------------------------------------------------

    def session_cookie(self, user: str) -> str:
        """A signed ``user|expiry`` value."""
        expiry = int(time.time() + self.settings.session_hours * 3600)
        payload = f"{user}|{expiry}"
        signature = hmac.new(self.session_key, payload.encode(), hashlib.sha256).hexdigest()
        return base64.urlsafe_b64encode(f"{payload}|{signature}".encode()).decode()

    def from_session(self, cookie: str | None) -> Caller | None:
        """The user of a valid, unexpired session cookie."""
        if not cookie:
            return None
        try:
            user, expiry, signature = base64.urlsafe_b64decode(cookie).decode().rsplit("|", 2)
        except (ValueError, UnicodeDecodeError):
            return None
        expected = hmac.new(self.session_key, f"{user}|{expiry}".encode(), hashlib.sha256)
        if not hmac.compare_digest(expected.hexdigest(), signature):
            return None
        if int(expiry) < time.time():
            return None
        if user not in self.tokens.values():
            return None  # the user's token was revoked since they signed in
        return Caller(user=user, via="session")

    def csrf_token(self, user: str) -> str:
        """The form token bound to a user's session."""
        return hmac.new(self.session_key, f"csrf|{user}".encode(), hashlib.sha256).hexdigest()


def session_key(path: Path | None) -> bytes:
    """The signing key: from its file, or random for this process."""
    if path is None:
        return secrets.token_bytes(32)
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise AuthConfigError(f"MUSTER_GATEWAY_AUTH__SESSION_SECRET_FILE={path}: {exc}") from None
    if len(key) < 16:
        raise AuthConfigError(
            f"MUSTER_GATEWAY_AUTH__SESSION_SECRET_FILE={path}: at least 16 bytes, please"
        )
    return key


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "hash":
        print("usage: python -m muster_gateway.auth hash TOKEN", file=sys.stderr)
        sys.exit(2)
    print(hash_token(sys.argv[2]))
