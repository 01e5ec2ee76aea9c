#!/bin/sh
# Build stage of every Muster image: install one workspace package and its locked
# dependencies (uv.lock, no dev tools) into the virtualenv /opt/muster, non-editable and
# byte-compiled, so the runtime stage copies that one folder and never writes to disk.
#
#   install.sh PACKAGE      e.g. install.sh muster-gateway
set -eu
package=${1:?usage: install.sh PACKAGE}
/opt/uv/bin/uv sync --locked --no-dev --no-editable --compile-bytecode \
  --python python3.11 --package "$package" 2>&1 || {
  echo "install.sh: could not install $package from uv.lock (is uv.lock current? run 'make lock')" >&2
  exit 1
}
# The virtualenv must run on the runtime stage's interpreter: prove it imports.
/opt/muster/bin/python -c "import importlib.metadata as m; print('installed', '$package', m.version('$package'))"
