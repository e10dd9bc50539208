"""Renders every overlay and holds what it renders to the Kubernetes schemas
and a policy scanner, failing on any error (scripts/k8s-check.sh runs it in
its own virtual environment; docs/kubernetes.md, "Validation").

For each overlay under deploy/kubernetes/overlays:

1. `kubectl kustomize` renders it into target/kubernetes/<overlay>.yaml.
2. Every object is validated, strictly (no unknown field), against the
   Kubernetes OpenAPI schemas of the oldest and the newest version we support
   (kubernetes-validate). The three custom resources used (cert-manager's
   Certificate and Issuer, External Secrets' ExternalSecret) have no schema
   available offline; they are held to the subsets of their schemas below,
   written from the projects' API references. Any other kind is an error.
3. checkov scans the rendered objects. Every failed check must be listed in
   policy-exceptions.yaml with a reason, and every entry there must still
   match a finding (so a fixed finding's exception goes too).
"""

from __future__ import annotations

import fnmatch
import json
import pathlib
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = ROOT / "target" / "kubernetes"

# The oldest Kubernetes the manifests support (native gRPC probes are GA
# since 1.27; 1.32 is the oldest version still maintained upstream when this
# was written) and the newest kubernetes-validate knows.
VERSIONS = ["1.32.0", kubernetes_validate.latest_version()]


def _strict(properties: dict, required: list[str] | None = None) -> dict:
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


_STRING = {"type": "string"}
_STRINGS = {"type": "array", "items": _STRING}
_METADATA = {"type": "object", "required": ["name"]}
_ISSUER_REF = _strict(
    {"name": _STRING, "kind": {"enum": ["Issuer", "ClusterIssuer"]}, "group": _STRING},
    ["name"],
)
_PRIVATE_KEY = _strict(
    {
        "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
        "size": {"type": "integer"},
        "encoding": {"enum": ["PKCS1", "PKCS8"]},
        "rotationPolicy": {"enum": ["Never", "Always"]},
    }
)
_USAGES = {
    "type": "array",
    "items": {
        "enum": [
            "signing", "digital signature", "content commitment", "key encipherment",
            "key agreement", "data encipherment", "cert sign", "crl sign",
            "encipher only", "decipher only", "any", "server auth", "client auth",
            "code signing", "email protection", "s/mime", "ipsec end system",
            "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
            "microsoft sgc", "netscape sgc",
        ]
    },
}
_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$"}

# cert-manager.io/v1 (https://cert-manager.io/docs/reference/api-docs/) and
# external-secrets.io/v1 (https://external-secrets.io/latest/api/spec/): the
# fields these manifests use, with their types and the required ones.
CUSTOM_SCHEMAS = {
    ("cert-manager.io/v1", "Certificate"): _strict(
        {
            "apiVersion": _STRING,
            "kind": _STRING,
            "metadata": _METADATA,
            "spec": _strict(
                {
                    "secretName": _STRING,
                    "commonName": _STRING,
                    "dnsNames": _STRINGS,
                    "isCA": {"type": "boolean"},
                    "duration": _DURATION,
                    "renewBefore": _DURATION,
                    "privateKey": _PRIVATE_KEY,
                    "usages": _USAGES,
                    "issuerRef": _ISSUER_REF,
                },
                ["secretName", "issuerRef"],
            ),
        },
        ["apiVersion", "kind", "metadata", "spec"],
    ),
    ("cert-manager.io/v1", "Issuer"): _strict(
        {
            "apiVersion": _STRING,
            "kind": _STRING,
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "properties": {
                    "selfSigned": _strict({"crlDistributionPoints": _STRINGS}),
                    "ca": _strict({"secretName": _STRING}, ["secretName"]),
                },
                "additionalProperties": False,
                "minProperties": 1,
                "maxProperties": 1,
            },
        },
        ["apiVersion", "kind", "metadata", "spec"],
    ),
    ("external-secrets.io/v1", "ExternalSecret"): _strict(
        {
            "apiVersion": _STRING,
            "kind": _STRING,
            "metadata": _METADATA,
            "spec": _strict(
                {
                    "refreshInterval": _DURATION,
                    "secretStoreRef": _strict(
                        {"kind": {"enum": ["SecretStore", "ClusterSecretStore"]}, "name": _STRING},
                        ["name"],
                    ),
                    "target": _strict(
                        {
                            "name": _STRING,
                            "creationPolicy": {"enum": ["Owner", "Orphan", "Merge", "None"]},
                        }
                    ),
                    "data": {
                        "type": "array",
                        "items": _strict(
                            {
                                "secretKey": _STRING,
                                "remoteRef": _strict(
                                    {"key": _STRING, "property": _STRING, "version": _STRING},
                                    ["key"],
                                ),
                            },
                            ["secretKey", "remoteRef"],
                        ),
                    },
                },
                ["secretStoreRef"],
            ),
        },
        ["apiVersion", "kind", "metadata", "spec"],
    ),
}


def render(overlay: pathlib.Path) -> tuple[pathlib.Path, list[dict]]:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], check=True, capture_output=True, text=True
    ).stdout
    out = OUT / f"{overlay.name}.yaml"
    out.write_text(rendered)
    return out, [doc for doc in yaml.safe_load_all(rendered) if doc]


def validate(objects: list[dict]) -> list[str]:
    errors = []
    for obj in objects:
        what = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        custom = CUSTOM_SCHEMAS.get((obj.get("apiVersion"), obj.get("kind")))
        if custom is not None:
            for error in jsonschema.Draft202012Validator(custom).iter_errors(obj):
                path = ".".join(str(p) for p in error.absolute_path)
                errors.append(f"{what}: {path}: {error.message}")
            continue
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                errors.append(f"{what}: no schema for {obj.get('apiVersion')} {obj.get('kind')}")
                break
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                errors.append(f"{what} (Kubernetes {version}): {path}: {error.message}")
    return errors


def scan(rendered: pathlib.Path) -> list[tuple[str, str]]:
    """checkov's failed checks: (check id, `Kind.name`)."""
    result = subprocess.run(
        [
            sys.executable, "-m", "checkov.main", "--file", str(rendered),
            "--framework", "kubernetes", "--skip-download", "--output", "json", "--quiet",
        ],
        capture_output=True,
        text=True,
        env={
            "BC_SKIP_MAPPING": "TRUE",
            "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
            "PATH": "/usr/bin:/bin",
        },
    )
    # checkov exits 1 when a check fails; anything else with no report is a crash.
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        sys.exit(f"checkov did not report (exit {result.returncode}):\n{result.stderr[-4000:]}")
    if isinstance(report, list):
        report = next(r for r in report if r.get("check_type") == "kubernetes")
    failed = report.get("results", {}).get("failed_checks", [])
    # resource: Kind.namespace.name
    return sorted(
        {(f["check_id"], f"{f['resource'].split('.')[0]}.{f['resource'].split('.')[-1]}") for f in failed}
    )


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    exceptions = yaml.safe_load((HERE / "policy-exceptions.yaml").read_text())
    used = set()
    failures = []
    overlays = sorted(p for p in (HERE / "overlays").iterdir() if p.is_dir())
    for overlay in overlays:
        rendered, objects = render(overlay)
        errors = validate(objects)
        findings = scan(rendered)
        print(f"{overlay.name}: {len(objects)} objects, {len(errors)} schema errors, "
              f"{len(findings)} policy findings")
        failures += [f"{overlay.name}: {e}" for e in errors]
        for check, resource in findings:
            match = next(
                (
                    i for i, e in enumerate(exceptions)
                    if e["check"] == check
                    and overlay.name in e["overlays"]
                    and any(fnmatch.fnmatchcase(resource, r) for r in e["resources"])
                ),
                None,
            )
            if match is None:
                failures.append(f"{overlay.name}: {check} on {resource}: not in policy-exceptions.yaml")
            else:
                used.add(match)
                print(f"  {check} on {resource}: listed ({exceptions[match]['reason'].strip().splitlines()[0]})")
    for i, exception in enumerate(exceptions):
        if not exception.get("reason", "").strip():
            failures.append(f"policy-exceptions.yaml: {exception['check']} has no reason")
        if i not in used:
            failures.append(
                f"policy-exceptions.yaml: {exception['check']} on {exception['resources']} "
                f"({exception['overlays']}) matches no finding any more: remove it"
            )
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
