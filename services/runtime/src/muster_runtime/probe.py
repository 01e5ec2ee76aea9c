"""``python -m muster_runtime.probe [--timeout S] URL...``: wait until every URL answers 2xx.

The chart's ``helm test`` runs it in a Muster image to prove the platform answers; it is
also handy in scripts. Exit status 0 when all URLs answered in time, 1 otherwise (naming the
ones that did not and what they said last), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from urllib.parse import urlparse

from muster_runtime.polling import PollTimeout, wait_until


def _answer(url: str, timeout: float) -> tuple[int, str]:
    """(HTTP status, first bytes of the body); status 0 with the error when unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http(s) only, checked)
            return response.status, response.read(200).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(200).decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(getattr(exc, "reason", exc))


def main(argv: Sequence[str] | None = None) -> int:
    """Probe the URLs; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m muster_runtime.probe", description=__doc__)
    parser.add_argument("urls", nargs="+", metavar="URL", help="http(s) URL that must answer 2xx")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait in all")
    args = parser.parse_args(argv)
    for url in args.urls:
        if urlparse(url).scheme not in {"http", "https"}:
            parser.error(f"{url!r} is not an http(s) URL")
    last: dict[str, tuple[int, str]] = {}

    def all_answer() -> bool:
        for url in args.urls:
            if url in last and 200 <= last[url][0] < 300:
                continue
            last[url] = _answer(url, timeout=5.0)
        return all(200 <= status < 300 for status, _ in last.values())

    try:
        wait_until(all_answer, what="every URL to answer", timeout=args.timeout, interval=1.0)
    except PollTimeout:
        for url in args.urls:
            status, text = last.get(url, (0, "not tried"))
            verdict = "ok" if 200 <= status < 300 else "FAILED"
            print(f"{verdict} {url}: {status or 'unreachable'} {text.strip()[:160]}")
        return 1
    for url in args.urls:
        print(f"ok {url}: {last[url][0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
