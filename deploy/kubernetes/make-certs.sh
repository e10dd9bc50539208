#!/usr/bin/env bash
# Without cert-manager: makes the deployment's CA and the services'
# certificates with `auth-server admin dev-certs` (the compose deployment's
# tool), and stores each as the Secret the Deployments mount
# (`<service>-tls`: tls.crt, tls.key, ca.crt). The CA's key stays in --dir,
# outside the cluster. Run it again with --renew before the certificates
# expire (90 days); the services reload them within TLS_RELOAD_INTERVAL.
# Then deploy an overlay without the cert-manager component (docs/kubernetes.md,
# "Certificates").
#
# Usage: deploy/kubernetes/make-certs.sh --dir DIR [--namespace NS] [--renew]
#   auth-server must be on PATH (cargo install --path auth-server, or the
#   image: docker run --rm -v "$DIR:/certs" tollgate auth-server admin dev-certs …).
set -euo pipefail
dir="" namespace=tollgate-dev renew=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir="$2"; shift 2 ;;
        --namespace) namespace="$2"; shift 2 ;;
        --renew) renew=(--renew); shift ;;
        *) echo "usage: $0 --dir DIR [--namespace NS] [--renew]" >&2; exit 2 ;;
    esac
done
[ -n "$dir" ] || { echo "usage: $0 --dir DIR [--namespace NS] [--renew]" >&2; exit 2; }

services=(auth-server resource-server notes-store)
auth-server admin dev-certs --dir "$dir" "${renew[@]}" $(printf -- '--service=%s ' "${services[@]}")
for service in "${services[@]}"; do
    kubectl --namespace "$namespace" create secret generic "$service-tls" \
        --from-file=tls.crt="$dir/$service.pem" \
        --from-file=tls.key="$dir/$service.key" \
        --from-file=ca.crt="$dir/ca.pem" \
        --dry-run=client --output yaml | kubectl apply -f -
done
