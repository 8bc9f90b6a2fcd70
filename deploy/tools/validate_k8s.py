#!/usr/bin/env python3
"""Validates the Kubernetes manifests offline.

- Core kinds: against the Kubernetes OpenAPI schemas bundled in the PyPI package
  `kubernetes-validate` (no network), in strict mode (unknown fields are errors), for every
  Kubernetes version given with --k8s-version.
- ServiceMonitor (a Prometheus Operator CRD, in no bundled schema): against
  deploy/k8s/schemas/servicemonitor-monitoring.coreos.com-v1.json, a strict subset of the CRD.
- kustomization.yaml: every listed resource exists and is validated; image names it rewrites are
  the ones the manifests use.
Any other kind without a schema is an error, so nothing is skipped silently.
"""
import argparse
import copy
import glob
import importlib.metadata
import json
import os
import sys

import jsonschema
import kubernetes_validate
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
K8S = os.path.normpath(os.path.join(HERE, "..", "k8s"))
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1.json",
}


def images_in(doc):
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", {}) if "template" in spec else {}
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        yield c["image"].split(":")[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k8s-version", action="append", default=[])
    args = ap.parse_args()
    versions = args.k8s_version or [kubernetes_validate.latest_version()]

    files = sorted(glob.glob(os.path.join(K8S, "**", "*.yaml"), recursive=True))
    errors, checked, images, kustomized_images = [], 0, set(), set()
    for path in files:
        rel = os.path.relpath(path, K8S)
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            kind, api = doc.get("kind"), doc.get("apiVersion")
            if kind == "Kustomization":
                for res in doc.get("resources", []):
                    if not os.path.exists(os.path.join(os.path.dirname(path), res)):
                        errors.append(f"{rel}: resource {res} does not exist")
                kustomized_images = {i["name"] for i in doc.get("images", [])}
                continue
            if (api, kind) in CRD_SCHEMAS:
                with open(os.path.join(K8S, "schemas", CRD_SCHEMAS[(api, kind)])) as f:
                    schema = json.load(f)
                before = len(errors)
                for err in jsonschema.Draft202012Validator(schema).iter_errors(doc):
                    errors.append(f"{rel}: {kind}: {err.json_path}: {err.message}")
                checked += 1
                if len(errors) == before:
                    print(f"ok   {rel}: {kind}/{doc['metadata']['name']} (CRD subset schema)")
                continue
            images.update(images_in(doc))
            target = doc
            if "name" not in doc.get("metadata", {}) and "generateName" in doc.get("metadata", {}):
                # `kubectl create` fills in the name from generateName; the validator needs one.
                target = copy.deepcopy(doc)
                target["metadata"]["name"] = doc["metadata"]["generateName"] + "x"
            name = target.get("metadata", {}).get("name")
            before = len(errors)
            for v in versions:
                try:
                    kubernetes_validate.validate(target, v, strict=True)
                except kubernetes_validate.ValidationError as e:
                    errors.append(f"{rel}: {kind}/{name} (k8s {v}): {e.message} at {list(e.path)}")
                except kubernetes_validate.SchemaNotFoundError:
                    errors.append(f"{rel}: no schema for {api} {kind} in k8s {v}")
            checked += 1
            if len(errors) == before:
                print(f"ok   {rel}: {kind}/{name} (k8s {', '.join(versions)}, strict)")
    missing = images - kustomized_images - {"distilrec-distill"}
    if missing:
        errors.append(f"kustomization.yaml: images not rewritten by kustomize: {sorted(missing)}")
    for e in errors:
        print("ERROR", e)
    print(f"{checked} manifests checked, {len(errors)} errors "
          f"(kubernetes-validate {importlib.metadata.version('kubernetes-validate')})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
