"""Leaving a process that used a Temporal client.

CPython's finalizer can crash (SIGABRT, "PyGILState_Release: thread state ... must be
current when releasing") when Temporal's Rust runtime threads are still alive at
interpreter exit (temporalio/sdk-python#300). Every Muster entry point therefore ends
with :func:`exit_now`, after all its own cleanup has run, so the exit status is the one
the program chose.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn


def exit_now(status: int) -> NoReturn:
    """Flush logs and standard streams, then exit without interpreter finalization."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)
