#!/bin/sh
# The runtime image's one-time set-up, shared by the Dockerfile and the offline
# image (docker/offline/Dockerfile) so both images are the same but for how the
# binaries were compiled.
set -eu
# A fixed, unprivileged uid: volumes and secret files can be owned by it.
groupadd --system --gid 10001 tollgate
useradd --system --uid 10001 --gid tollgate --create-home --home-dir /home/tollgate \
    --shell /usr/sbin/nologin tollgate
# Where the services keep an embedded SQLite database if no PostgreSQL URL is
# given, and where the dev-secrets job writes (see docker-compose.yml).
mkdir -p /data /secrets
chown tollgate:tollgate /data /secrets
