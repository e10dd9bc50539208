#!/usr/bin/env bash
# Renders every Kubernetes overlay and validates it: the Kubernetes schemas
# (kubernetes-validate, strict) and the checkov policy scan, with the listed
# exceptions only (deploy/kubernetes/check.py says exactly what it checks).
#
# Needs kubectl (its built-in kustomize renders; neither Debian nor PyPI
# packages a kustomize binary) and Python 3 with venv; the Python tools are
# installed at pinned versions into target/k8s-venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v kubectl >/dev/null; then
    echo "kubectl is needed to render the overlays (kubectl kustomize)" >&2
    exit 1
fi
venv=target/k8s-venv
if [ ! -x "$venv/bin/checkov" ]; then
    echo "--- installing kubernetes-validate and checkov into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        kubernetes-validate==1.37.0 checkov==3.3.30
fi
echo "--- rendering and validating deploy/kubernetes/overlays/*"
"$venv/bin/python" deploy/kubernetes/check.py
