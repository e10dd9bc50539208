#!/bin/sh
# Entry point of the offline PostgreSQL image: the part of the official
# postgres image's interface that docker-compose.yml uses (POSTGRES_USER,
# POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE, POSTGRES_DB, PGDATA), so the same
# compose file runs against either image.
set -eu
bin=/usr/lib/postgresql/15/bin
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export PGDATA

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    POSTGRES_PASSWORD="$(cat "$POSTGRES_PASSWORD_FILE")"
fi
user="${POSTGRES_USER:-postgres}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE}"
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    "$bin/initdb" -D "$PGDATA" -U "$user" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    db="${POSTGRES_DB:-$user}"
    # A private server (no TCP) just long enough to create the database and run
    # /docker-entrypoint-initdb.d/*.sql, as the official image does.
    "$bin/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [ "$db" != "postgres" ]; then
        "$bin/createdb" -U "$user" "$db"
    fi
    for script in /docker-entrypoint-initdb.d/*.sql; do
        [ -e "$script" ] || continue
        echo "running $script"
        "$bin/psql" -v ON_ERROR_STOP=1 -q -U "$user" -d "$db" -f "$script"
    done
    "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
fi

exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' "$@"
