"""Kubernetes objects for tests, offline: Pods, AdmissionReviews, patch application, schema checks.

``validate_everywhere`` checks an object against the bundled schemas of ``KUBE_VERSIONS``
(``kubernetes-validate``, strict: unknown fields are errors), so a test proves the object
would be accepted by two API server minor versions without a cluster.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from typing import Any

import jsonpatch
import kubernetes_validate

KUBE_VERSIONS = ("1.30", "1.35")


def pod(
    *,
    namespace: str = "ml",
    annotations: dict[str, str] | None = None,
    containers: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "trainer", "namespace": namespace}
    if annotations is not None:
        metadata["annotations"] = annotations
    body = {"containers": containers or [{"name": "main", "image": "python:3.11-slim"}], **spec}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": body}


def admission_review(
    obj: dict[str, Any], *, operation: str = "CREATE", kind: str = "Pod"
) -> dict[str, Any]:
    namespace = obj.get("metadata", {}).get("namespace", "default")
    request = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "", "version": "v1", "kind": kind},
        "resource": {"group": "", "version": "v1", "resource": kind.lower() + "s"},
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": "system:serviceaccount:ml:deployer"},
        "object": obj,
        "dryRun": False,
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def patch_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSONPatch of an AdmissionReview answer (``[]`` when there is none)."""
    response = answer["response"]
    if "patch" not in response:
        return []
    assert response["patchType"] == "JSONPatch"
    ops: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return ops


def apply_answer(obj: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as the API server would store it after the webhook's patch (RFC 6902)."""
    patched: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(obj), patch_of(answer))
    return patched


def validate_everywhere(obj: dict[str, Any]) -> None:
    """Raise ``kubernetes_validate.ValidationError`` if any version's schema refuses ``obj``."""
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """A container's variables by name: the value, or the ``valueFrom`` mapping."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
