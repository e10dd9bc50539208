#!/usr/bin/env bash
# Installs and starts what the test suite needs beyond the Rust toolchain, on a
# Debian machine: Chromium and chromedriver (the browser test) and PostgreSQL
# (the storage suites' second backend), then makes the `tollgate` role.
# Idempotent; `cargo xtask ci` runs it first. Needs root (or sudo).
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "--- installing chromium and chromium-driver"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if ! command -v pg_ctlcluster >/dev/null; then
    echo "--- installing postgresql"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
pg_version="$(ls /etc/postgresql | sort -V | tail -n 1)"
echo "--- starting PostgreSQL $pg_version"
as_root pg_ctlcluster "$pg_version" main start 2>/dev/null || as_root pg_ctlcluster "$pg_version" main status >/dev/null
as_root runuser -u postgres -- psql -qc "DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tollgate') THEN
        CREATE ROLE tollgate LOGIN SUPERUSER PASSWORD 'tollgate';
    END IF;
END \$\$;"
