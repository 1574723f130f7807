"""The admission decision, sans-IO: an ``AdmissionReview`` dict in, the response dict out.

``review()`` never raises for what the API server sends: a review it cannot read is
admitted with a message (the API server would otherwise see a 500 and apply the webhook's
failurePolicy to every Pod, including ones the policy never meant to touch); a Pod it cannot
inject is admitted unchanged (``failure_policy: ignore``, fail open) or refused
(``fail``), and the verdict says so, so the server counts it and logs one event line.
"""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from damselfly.config.injector import InjectionPolicy
from damselfly.injector.patch import (
    INJECT_ANNOTATION,
    INJECTED_ANNOTATION,
    InjectionError,
    build_patch,
)

API_VERSION = "admission.k8s.io/v1"


class Outcome(enum.Enum):
    """What happened to one review (the ``outcome`` label of the reviews counter)."""

    INJECTED = "injected"
    NOT_REQUESTED = "not_requested"  # no damselfly.io/inject: "true"
    OUTSIDE_POLICY = "outside_policy"
    ALREADY_INJECTED = "already_injected"
    IGNORED = "ignored"  # not a Pod CREATE
    FAILED = "failed"  # could not inject; admitted or refused per failure_policy
    MALFORMED = "malformed"


@dataclass(frozen=True)
class Verdict:
    response: dict[str, Any]
    outcome: Outcome
    namespace: str = ""
    pod: str = ""
    message: str = ""


@dataclass(frozen=True)
class PodRequest:
    uid: str
    namespace: str
    name: str
    operation: str
    kind: str
    pod: dict[str, Any]


def mutate(review_dict: Any, policy: InjectionPolicy) -> dict[str, Any]:
    """The ``AdmissionReview`` to answer with."""
    return review(review_dict, policy).response


def review(review_dict: Any, policy: InjectionPolicy) -> Verdict:
    try:
        request = parse_request(review_dict)
    except ValueError as exc:
        message = f"malformed AdmissionReview: {exc}"
        response = _answer(_uid(review_dict), message=message)
        return Verdict(response, Outcome.MALFORMED, message=message)
    where = {"namespace": request.namespace, "pod": request.name}
    outcome = _skip_reason(request, policy)
    if outcome is not None:
        return Verdict(_answer(request.uid), outcome, **where)
    try:
        patch = build_patch(request.pod, policy)
    except InjectionError as exc:
        return _failed(request, policy, str(exc))
    except (AttributeError, TypeError, KeyError) as exc:  # a field of an unexpected type
        return _failed(request, policy, f"unexpected Pod shape ({type(exc).__name__}: {exc})")
    return Verdict(_answer(request.uid, patch=patch), Outcome.INJECTED, **where)


def parse_request(review_dict: Any) -> PodRequest:
    """The fields we use, checked; ``ValueError`` names the first one missing."""
    if not isinstance(review_dict, dict) or review_dict.get("kind") != "AdmissionReview":
        raise ValueError("not an AdmissionReview object")
    request = review_dict.get("request")
    if not isinstance(request, dict):
        raise ValueError("no request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ValueError("request.uid missing")
    kind = request.get("kind")
    kind = kind if isinstance(kind, dict) else {}
    pod = request.get("object")
    if not isinstance(pod, dict) or not isinstance(pod.get("metadata", {}), dict):
        raise ValueError("request.object is not an object")
    metadata = pod.get("metadata") or {}
    name = request.get("name") or metadata.get("name") or metadata.get("generateName") or ""
    namespace = request.get("namespace") or metadata.get("namespace") or ""
    return PodRequest(
        uid=uid,
        namespace=str(namespace),
        name=str(name),
        operation=str(request.get("operation", "")),
        kind=str(kind.get("kind", "")),
        pod=pod,
    )


def allowed_namespace(namespace: str, policy: InjectionPolicy) -> bool:
    if any(fnmatchcase(namespace, p) for p in policy.excluded_namespaces):
        return False
    return any(fnmatchcase(namespace, p) for p in policy.namespaces)


def _skip_reason(request: PodRequest, policy: InjectionPolicy) -> Outcome | None:
    if request.kind != "Pod" or request.operation != "CREATE":
        return Outcome.IGNORED
    annotations = request.pod.get("metadata", {}).get("annotations") or {}
    if not isinstance(annotations, dict) or annotations.get(INJECT_ANNOTATION) != "true":
        return Outcome.NOT_REQUESTED
    if not allowed_namespace(request.namespace, policy):
        return Outcome.OUTSIDE_POLICY
    if INJECTED_ANNOTATION in annotations:
        return Outcome.ALREADY_INJECTED
    if not isinstance(request.pod.get("spec"), dict):
        return Outcome.IGNORED
    return None


def _failed(request: PodRequest, policy: InjectionPolicy, problem: str) -> Verdict:
    message = f"damselfly injection failed: {problem}"
    allowed = policy.failure_policy == "ignore"
    response = _answer(request.uid, message=message, allowed=allowed)
    return Verdict(response, Outcome.FAILED, request.namespace, request.name, message)


def _answer(
    uid: str,
    *,
    patch: list[dict[str, Any]] | None = None,
    message: str = "",
    allowed: bool = True,
) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode("ascii")
    if message:
        response["status"] = {"code": 200 if allowed else 403, "message": message}
        if allowed:
            response["warnings"] = [message]
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def _uid(review_dict: Any) -> str:
    request = review_dict.get("request") if isinstance(review_dict, dict) else None
    uid = request.get("uid") if isinstance(request, dict) else None
    return uid if isinstance(uid, str) else ""
