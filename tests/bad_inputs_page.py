"""The approver page's share of the table of malformed inputs: its forms with missing,
forged and replayed CSRF tokens, expired, forged and garbage sessions, garbage tokens, and
oversize fields. Each must get a 4xx page that says what is wrong, and none may write
anything (``tests/temporal/test_page_bad_inputs.py`` runs the table and checks that).

One case is one line: :func:`page` takes what it sends and what must come back. ``session``
is whose signed-in browser sends it: a user (``"alice"``), a session that has ``"expired"``,
one signed with another key (``"forged"``), a ``"garbage"`` cookie, or None (no cookie).
``csrf`` is the form's token: ``"valid"`` (the session's own), ``"earlier"`` (from an
earlier session of the same user: a replay), ``"bob"`` (bob's), ``"forged"``, or any other
text sent as it is. In paths, ``{request}`` is a pending request alice and bob may decide.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BIG = 5 * 1024 * 1024
LONG_ID = "x" * 10_000
DECIDE = "/ui/approvals/{request}/decide"


@dataclass(frozen=True)
class PageCase:
    """One request to the approver page and the refusal it must get."""

    name: str
    method: str
    path: str
    form: dict[str, str] | None = None
    status: int = 403
    says: str = ""
    session: str | None = "alice"
    csrf: str = "valid"
    headers: dict[str, str] = field(default_factory=dict)


def page(name: str, method: str, path: str, form: dict[str, str] | None = None,
         status: int = 403, says: str = "", **more: object) -> PageCase:  # fmt: skip
    """A :class:`PageCase` on one line."""
    return PageCase(name, method, path, form, status, says, **more)  # type: ignore[arg-type]


APPROVE = {"verdict": "approve"}
REJECT = {"verdict": "reject", "reason": "not now", "confirm": "yes"}
CSRF_REFUSED = "does not belong to your current session"
BEARER = {"Authorization": "Bearer garbage-token"}

# fmt: off
PAGE: list[PageCase] = [
    # -- CSRF tokens -----------------------------------------------------------------------
    page("decide without a CSRF token", "POST", DECIDE, APPROVE, says=CSRF_REFUSED, csrf=""),
    page("decide with a forged CSRF token", "POST", DECIDE, APPROVE, says=CSRF_REFUSED, csrf="forged"),
    page("decide with a replayed CSRF token (earlier session)", "POST", DECIDE, REJECT, says=CSRF_REFUSED, csrf="earlier"),
    page("decide with another user's CSRF token", "POST", DECIDE, APPROVE, says=CSRF_REFUSED, csrf="bob"),
    page("decide with a 10,000-character CSRF token", "POST", DECIDE, APPROVE, status=422, says="at most 128", csrf="c" * 10_000),
    page("sign out with a forged CSRF token", "POST", "/ui/logout", {}, says=CSRF_REFUSED, csrf="forged"),
    page("sign out without a CSRF token", "POST", "/ui/logout", {}, says=CSRF_REFUSED, csrf=""),
    page("sign out with a replayed CSRF token", "POST", "/ui/logout", {}, says=CSRF_REFUSED, csrf="earlier"),
    # -- sessions and tokens ---------------------------------------------------------------
    page("decide with an expired session", "POST", DECIDE, APPROVE, status=401, says="session has expired", session="expired", csrf="forged"),
    page("decide with a session signed by another key", "POST", DECIDE, APPROVE, status=401, says="not valid", session="forged", csrf="forged"),
    page("decide with a garbage session cookie", "POST", DECIDE, APPROVE, status=401, says="not valid", session="garbage", csrf="forged"),
    page("decide signed out", "POST", DECIDE, APPROVE, status=401, says="not signed in", session=None, csrf="forged"),
    page("decide with a garbage bearer token", "POST", DECIDE, APPROVE, status=401, says="not valid", session=None, csrf="forged", headers=BEARER),
    page("open a request with a garbage bearer token", "GET", "/ui/approvals/{request}", status=401, says="not valid", session=None, headers=BEARER),
    page("sign in with a garbage token", "POST", "/ui/login", {"user": "alice", "token": "garbage"}, status=401, says="do not match", session=None),
    page("sign in with another user's token", "POST", "/ui/login", {"user": "alice", "token": "bob-demo-token"}, status=401, says="do not match", session=None),
    page("sign in with nothing", "POST", "/ui/login", {}, status=401, says="do not match", session=None),
    # -- oversize and malformed fields -----------------------------------------------------
    page("sign in with a 10,000-character token", "POST", "/ui/login", {"user": "alice", "token": "t" * 10_000}, status=422, says="at most 1,024", session=None),
    page("sign in with a 10,000-character user id", "POST", "/ui/login", {"user": "u" * 10_000, "token": "x"}, status=422, says="at most 256", session=None),
    page("reject without a reason", "POST", DECIDE, {"verdict": "reject", "reason": "   ", "confirm": "yes"}, status=422, says="A rejection needs a reason"),
    page("reject with a 2,001-character reason", "POST", DECIDE, {"verdict": "reject", "reason": "r" * 2_001, "confirm": "yes"}, status=422, says="at most 2,000"),
    page("approve with a 5 MB comment", "POST", DECIDE, {"verdict": "approve", "reason": "c" * BIG}, status=413, says="accepts at most 1048576 bytes"),
    page("approve with a 3,000-character comment", "POST", DECIDE, {"verdict": "approve", "reason": "c" * 3_000}, status=422, says="at most 2,000"),
    page("no verdict", "POST", DECIDE, {}, status=422, says="choose Approve or Reject"),
    page("a verdict of maybe", "POST", DECIDE, {"verdict": "maybe"}, status=422, says="choose Approve or Reject"),
    page("a 10,000-character verdict", "POST", DECIDE, {"verdict": "v" * 10_000}, status=422, says="at most 16"),
    page("decide as the requester", "POST", DECIDE, APPROVE, says="dave may not decide request", session="dave"),
    page("decide as an outsider", "POST", DECIDE, APPROVE, says="neither requester nor approver", session="shop"),
    page("decide an unknown request", "POST", "/ui/approvals/no-such-request/decide", APPROVE, status=404, says="no approval request"),
    page("a page that does not exist", "GET", "/ui/no-such-page", status=404, says="there is no page"),
]
# fmt: on
"""The page's cases (merge into ``tests/bad_inputs.py`` beside the API's)."""
