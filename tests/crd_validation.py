"""Check a manifest against a CustomResourceDefinition's openAPIV3Schema the way the API server would, offline.

- JSON-schema validation (Draft 7) of the CRD version matching the manifest's apiVersion, with Kubernetes'
  dialect mapped: `nullable`, `x-kubernetes-int-or-string` (already an anyOf in controller-gen output),
  int32/int64 formats checked;
- pruning: the API server silently DROPS fields a structural schema does not declare; `pruned_fields` lists
  them (a field that would vanish is a bug even if validation passes), except under
  `x-kubernetes-preserve-unknown-fields`;
- the root `metadata` (ObjectMeta, not in the CRD schema) is checked for name and label syntax.
Not evaluated: `x-kubernetes-validations` (CEL rules).

Used by tests/api/test_render.py (and the RayCronJob renderer's tests): `validate_manifest(doc)` returns the list
of problems, empty when the API server would accept the object unchanged.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path

import jsonschema
import yaml

# KubeRay's CRDs, vendored unchanged (see tests/data/kuberay-crds/README.md for their origin and licence).
CRD_DIR = Path(__file__).resolve().parent / "data" / "kuberay-crds"

QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@functools.cache
def crds() -> dict[tuple[str, str, str], dict]:
    """(group, version, kind) -> openAPIV3Schema, for every CRD file in CRD_DIR."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the files are ~1 MB each
    out = {}
    paths = sorted(CRD_DIR.glob("*.yaml"))
    if not paths:
        raise FileNotFoundError(f"KubeRay's CRDs are not in {CRD_DIR} (vendored from KubeRay, see its README.md)")
    for path in paths:
        doc = yaml.load(path.read_text(), Loader=loader)
        group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
        for version in doc["spec"]["versions"]:
            out[(group, version["name"], kind)] = version["schema"]["openAPIV3Schema"]
    return out


def _to_json_schema(node):
    """Kubernetes' OpenAPI v3 dialect -> plain JSON schema (nullable -> null allowed)."""
    if isinstance(node, list):
        return [_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_json_schema(v) for k, v in node.items()}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


@functools.cache
def _validator(key: tuple[str, str, str]) -> jsonschema.Draft7Validator:
    checker = jsonschema.FormatChecker()

    @checker.checks("int32")
    def _int32(v) -> bool:
        return not isinstance(v, int) or -(2**31) <= v < 2**31

    @checker.checks("int64")
    def _int64(v) -> bool:
        return not isinstance(v, int) or -(2**63) <= v < 2**63

    schema = _to_json_schema(copy.deepcopy(crds()[key]))
    return jsonschema.Draft7Validator(schema, format_checker=checker)


def schema_for(doc: dict) -> tuple[tuple[str, str, str], dict]:
    group, _, version = doc["apiVersion"].partition("/")
    key = (group, version, doc["kind"])
    if key not in crds():
        raise KeyError(f"no CRD for {doc['apiVersion']} {doc['kind']} in {CRD_DIR}")
    return key, crds()[key]


def pruned_fields(value, schema: dict, path: str = "") -> list[str]:
    """Fields of `value` that a structural schema does not declare (the API server would drop them)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    out = []
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            if props is not None and k in props:
                out += pruned_fields(v, props[k], f"{path}.{k}")
            elif isinstance(extra, dict):
                out += pruned_fields(v, extra, f"{path}.{k}")
            elif extra is True:
                continue
            else:
                out.append(f"{path}.{k}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            out += pruned_fields(v, schema["items"], f"{path}[{i}]")
    return out


def object_meta_problems(meta: dict, path: str = "metadata") -> list[str]:
    problems = []
    name = meta.get("name")
    if not name or not DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
        problems.append(f"{path}.name `{name}` is not a DNS-1123 name")
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, label = key.rpartition("/")
        if (prefix and not DNS1123_SUBDOMAIN.match(prefix)) or not LABEL_NAME.match(label) or len(label) > 63:
            problems.append(f"{path}.labels: bad key `{key}`")
        if not isinstance(value, str) or not LABEL_VALUE.match(value) or len(value) > 63:
            problems.append(f"{path}.labels[{key}]: bad value `{value}`")
    return problems


def quantities(value, path: str = ""):
    """Every (path, quantity) under a `resources.requests` / `resources.limits` of a container."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k in ("requests", "limits") and path.endswith(".resources") and isinstance(v, dict):
                for name, q in v.items():
                    yield f"{path}.{k}.{name}", q
            else:
                yield from quantities(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from quantities(v, f"{path}[{i}]")


def validate_manifest(doc: dict) -> list[str]:
    """Every problem the API server (with KubeRay's CRDs installed) would have with `doc`: [] when none."""
    key, schema = schema_for(doc)
    problems = [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in _validator(key).iter_errors(doc)
    ]
    body = {k: v for k, v in doc.items() if k != "metadata"}
    problems += [f"would be pruned: {p}" for p in pruned_fields(body, schema)]
    problems += object_meta_problems(doc.get("metadata") or {})
    for path, q in quantities(doc):
        if not isinstance(q, str | int) or not QUANTITY.match(str(q)):
            problems.append(f"{path}: `{q}` is not a Kubernetes quantity")
    return problems
