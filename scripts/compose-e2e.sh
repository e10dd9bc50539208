#!/usr/bin/env bash
# The compose deployment, end to end, on this machine: builds the images
# offline (scripts/offline-images.sh), brings docker-compose.yml up with two
# replicas each of the authorization and resource servers, runs the
# client-app's whole flow inside the stack, then the fault tests
# (tests/tests/compose) from the host, and tears everything down.
#
# Usage: scripts/compose-e2e.sh [--profile release|dev]   (default: dev)
set -euo pipefail
cd "$(dirname "$0")/.."

profile=dev
if [ "${1:-}" = --profile ]; then profile="$2"; fi

export COMPOSE_FILE=docker-compose.yml:docker-compose.offline.yml
export COMPOSE_PROJECT_NAME=tollgate-e2e
# Fault-test timings: keys count as stale after 6 s without the auth server
# (production: an hour), refetched every 2 s, and a 3 s drain on SIGTERM.
export TOLLGATE_JWKS_MAX_STALENESS=6 TOLLGATE_JWKS_REFRESH=2 TOLLGATE_JWKS_MIN_REFETCH=1
export TOLLGATE_SHUTDOWN_DRAIN=3

scripts/offline-images.sh --profile "$profile"

teardown() {
    status=$?
    if [ "$status" -ne 0 ]; then
        echo "--- compose logs (failure)"
        docker-compose ps || true
        docker-compose logs --no-color --tail=40 || true
    fi
    echo "--- docker-compose down"
    docker-compose down --volumes --remove-orphans >/dev/null 2>&1 || true
    exit "$status"
}
trap teardown EXIT
docker-compose down --volumes --remove-orphans >/dev/null 2>&1 || true

echo "--- docker-compose up (2 auth-server, 2 resource-server replicas)"
# depends_on conditions order the start: secrets, postgres healthy, migrate
# done, auth-server healthy, notes-store healthy, resource-server.
docker-compose up --no-build --detach \
    --scale auth-server=2 --scale resource-server=2 resource-server

echo "--- waiting for every service's health check"
deadline=$((SECONDS + 180))
until [ -z "$(docker-compose ps -q | xargs -r docker inspect \
        -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' | grep -v '^healthy$' | grep -v '^$')" ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "the stack did not become healthy" >&2
        exit 1
    fi
    sleep 1
done
docker-compose ps

echo "--- client-app: the full flow, run once inside the stack"
docker-compose run --rm --no-deps client-app | tee target/compose-demo.log
grep -q "Done: every step followed the protocol" target/compose-demo.log

echo "--- the demo's note changes crossed both internal hops in one transaction"
# The ledger recorded them, and the transaction it names is the one the
# authorization server issued a Txn-Token for and the notes store admitted.
# (Each log is read whole into a file first: `grep -q` stops reading at its
# first match, and with pipefail the writer's broken pipe would fail the test.)
for service in ledger auth-server notes-store; do
    docker-compose logs --no-color "$service" > "target/compose-$service.log"
done
txn=$(grep '"recorded"' target/compose-ledger.log | grep -o '"txn":"[0-9a-f-]*"' | head -n 1 || true)
if [ -z "$txn" ]; then
    echo "the ledger recorded no change" >&2
    exit 1
fi
for service in auth-server notes-store; do
    if ! grep -q "$txn" "target/compose-$service.log"; then
        echo "$service has no record of $txn" >&2
        exit 1
    fi
done
echo "transaction $txn: auth-server, notes-store and ledger"

echo "--- client-app: a machine client's token, then a call from another container (README)"
# The token file is in the client-app's home volume: the second container finds it.
docker-compose run --rm --no-deps -e CLIENT_ID=tollgate-reporter \
    -e CLIENT_SECRET_FILE=/secrets/reporter-secret client-app client-app client-credentials
docker-compose run --rm --no-deps -e CLIENT_ID=tollgate-reporter \
    -e CLIENT_SECRET_FILE=/secrets/reporter-secret client-app client-app call report \
    | tee target/compose-report.log
grep -q "owners" target/compose-report.log

echo "--- fault tests against the stack"
cargo test --locked --workspace --test compose -- --ignored --test-threads=1
