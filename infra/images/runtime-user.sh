#!/bin/sh
# Build stages: give the runtime user, 10001:10001 (the Dockerfile's USER, the chart's
# runAsUser), a name in this stage's /etc/passwd and /etc/group, which the runtime stage
# then copies. Programs that look their user up fail on a uid the files lack: Python's
# getpass (kopf names its operator with it) raises KeyError, and the Temporal CLI's Go
# os/user refuses to start the dev server ("user: Current requires cgo or $USER set").
set -eu
grep -q '^muster:' /etc/passwd || echo 'muster:x:10001:10001:Muster:/tmp:/usr/sbin/nologin' >>/etc/passwd
grep -q '^muster:' /etc/group || echo 'muster:x:10001:' >>/etc/group
