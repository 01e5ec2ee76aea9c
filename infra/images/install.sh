#!/bin/sh
# Build stage of every Muster image: install one workspace package and its locked
# dependencies (uv.lock, no dev tools) into the virtualenv /opt/muster, non-editable and
# byte-compiled, so the runtime stage copies that one folder and never writes to disk; and
# write the image's entrypoint, /opt/muster/bin/muster-service, which execs the service's
# module (so every image has the same ENTRYPOINT and the process is python itself).
#
#   install.sh PACKAGE MODULE      e.g. install.sh muster-gateway muster_gateway
set -eu
package=${1:?usage: install.sh PACKAGE MODULE}
module=${2:?usage: install.sh PACKAGE MODULE}
case $module in
  *[!a-z0-9_.]*) echo "install.sh: $module is not a Python module name" >&2; exit 2 ;;
esac
/opt/uv/bin/uv sync --locked --no-dev --no-editable --compile-bytecode \
  --python python3.11 --package "$package" 2>&1 || {
  echo "install.sh: could not install $package from uv.lock (is uv.lock current? run 'make lock')" >&2
  exit 1
}
# The virtualenv must run on the runtime stage's interpreter, and carry the module: prove it.
/opt/muster/bin/python -c "import importlib.metadata as m, importlib.util as u, sys
assert u.find_spec('$module'), 'module $module is not installed by $package'
print('installed', '$package', m.version('$package'))"
cat >/opt/muster/bin/muster-service <<SCRIPT
#!/bin/sh
# The entrypoint of the $package image.
exec /opt/muster/bin/python -m $module "\$@"
SCRIPT
chmod 0755 /opt/muster/bin/muster-service
