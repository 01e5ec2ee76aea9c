"""The operator names itself to kopf without looking its user up: a pod run as a uid that
``/etc/passwd`` lacks (an arbitrary uid, as OpenShift assigns) starts instead of crashing in
``getpass.getuser()``, as the operator image once did on the local cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from muster_operator.__main__ import operator_identity

UNLISTED_UID = 54321

PROBE = f"""
import getpass, json, os
from muster_operator.__main__ import operator_identity
# Imported first: the interpreter's own files need not be readable by the unlisted uid.
os.setgid({UNLISTED_UID}); os.setuid({UNLISTED_UID})
try:
    getpass.getuser()
    lookup = "found"
except KeyError as exc:
    lookup = str(exc)
print(json.dumps({{"identity": operator_identity(), "getuser": lookup}}))
"""


def test_identity_is_the_pods_name() -> None:
    assert operator_identity().startswith("muster-operator@")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to an unlisted uid needs root")
def test_identity_needs_no_passwd_entry() -> None:
    names = ("LOGNAME", "USER", "LNAME", "USERNAME")  # getpass would read these first
    clean = {k: v for k, v in os.environ.items() if k not in names}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env={**clean, "POD_NAME": "muster-operator-abc12"},
        timeout=60,
        check=True,
    )
    seen = json.loads(result.stdout)
    # The condition is real: the uid has no name ...
    assert "uid not found" in seen["getuser"], seen
    # ... and the operator does not need one.
    assert seen["identity"] == "muster-operator@muster-operator-abc12"
