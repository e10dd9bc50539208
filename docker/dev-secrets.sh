#!/bin/sh
# Generates the compose deployment's secrets into the directory $1 (a volume),
# once: the database password, the session-cookie key, the confidential
# clients' secrets and the demo user's password. Nothing secret is committed to
# the repository or baked into an image; a fresh volume gets fresh secrets.
#
# Run as root by the one-shot `secrets` service, which then hands the files to
# the services' uid (10001). The database password is also readable by the
# PostgreSQL container's user; everything else is readable by uid 10001 only.
set -eu
dir="${1:-/secrets}"
umask 077

random() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }

write() { # name, value: written once, kept on later runs
    if [ ! -s "$dir/$1" ]; then
        printf '%s' "$2" >"$dir/$1.tmp" && mv "$dir/$1.tmp" "$dir/$1"
        echo "generated $1"
    fi
}

write postgres-password "$(random 24 | tr '+/' '-_')"
write cookie-key "$(random 64)"
# The services have no secrets: their TLS certificates authenticate them.
for client in web reporter; do
    write "$client-secret" "$(random 32 | tr '+/' '-_' | tr -d '=')"
done
write alice-password "$(random 12 | tr '+/' '-_')"

chown 10001:10001 "$dir"/*
chmod 0400 "$dir"/*
# PostgreSQL runs as its own user and reads its password once at initialisation.
chmod 0444 "$dir/postgres-password"
chmod 0755 "$dir"
