#!/bin/sh
# Entry point of the Tollgate image. For every variable NAME_FILE in the
# environment whose NAME ends in SECRET or PASSWORD (OAUTH_CLIENT_SECRET_FILE,
# PGPASSWORD_FILE, ...), NAME is set to the contents of that file before the
# service starts: the convention of the official postgres image, so secrets
# come from mounted files (compose volumes, Kubernetes secret volumes) and never
# appear in a compose file or `docker inspect`.
#
# Only those names: other settings end in _FILE too (CLIENT_TOKEN_FILE,
# AUTH_COOKIE_KEY_FILE) and are paths the services open themselves.
set -eu
for name in $(env | sed -n 's/^\([A-Za-z0-9_]*\(SECRET\|PASSWORD\)\)_FILE=.*/\1/p'); do
    file="$(printenv "${name}_FILE")"
    if ! value="$(cat "$file")"; then
        echo "tollgate-entrypoint: cannot read ${name}_FILE ($file)" >&2
        exit 1
    fi
    export "$name=$value"
    unset "${name}_FILE"
done
exec "$@"
