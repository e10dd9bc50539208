#!/usr/bin/env bash
# Creates the `tollgate-secrets` Secret of the dev overlay with random values
# (as docker/dev-secrets.sh does for compose): the database password, the
# cookie key, and the demo's client secrets and user password. Values already
# in the Secret are kept. Production takes them from a secret manager instead
# (overlays/production/external-secret.yaml).
#
# Usage: deploy/kubernetes/dev-secrets.sh [namespace]   (default: tollgate-dev)
set -euo pipefail
namespace="${1:-tollgate-dev}"

random() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }
urlsafe() { random "$1" | tr '+/' '-_' | tr -d '='; }

kubectl get namespace "$namespace" >/dev/null 2>&1 || kubectl create namespace "$namespace"
if kubectl --namespace "$namespace" get secret tollgate-secrets >/dev/null 2>&1; then
    echo "tollgate-secrets exists in $namespace; kept"
    exit 0
fi
# From files, so no value is on a command line (visible in `ps`).
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
umask 077
printf '%s' "$(urlsafe 24)" >"$dir/postgres-password"
printf '%s' "$(random 64)" >"$dir/cookie-key"
printf '%s' "$(urlsafe 32)" >"$dir/web-secret"
printf '%s' "$(urlsafe 32)" >"$dir/reporter-secret"
printf '%s' "$(urlsafe 12)" >"$dir/alice-password"
kubectl --namespace "$namespace" create secret generic tollgate-secrets --from-file="$dir"
echo "created tollgate-secrets in $namespace"
