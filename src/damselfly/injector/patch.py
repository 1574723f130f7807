"""The JSONPatch (RFC 6902) that injects damselfly into one Pod: pure data in, operations out.

Rules the patch keeps:

- An ``add`` to ``.../env/-`` fails on a container that has no ``env`` array (the API server
  rejects the whole patch), so a missing array is created whole with its first items; the
  same for ``volumeMounts``, ``volumes``, ``initContainers`` and ``metadata.annotations``.
- Nothing the Pod already sets is overwritten: a variable or a mount path the container
  already has is left alone (the user's ``HTTPS_PROXY`` wins). A volume name already taken
  is an ``InjectionError``: guessing another name would hide a conflict.
- ``DAMSELFLY_NODE_IP`` comes before the variables that refer to it as
  ``$(DAMSELFLY_NODE_IP)``: Kubernetes expands only variables defined earlier in the list.
- The annotation ``damselfly.io/injected`` marks the Pod, so a second review changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from damselfly.config.injector import InjectionPolicy
from damselfly.core.errors import DamselflyError

INJECT_ANNOTATION = "damselfly.io/inject"
MODELS_ANNOTATION = "damselfly.io/models"
INJECTED_ANNOTATION = "damselfly.io/injected"
NODE_IP = "DAMSELFLY_NODE_IP"
CA_VOLUME = "damselfly-ca"
SOCKET_VOLUME = "damselfly-socket"
MODELS_VOLUME = "damselfly-models"
MODEL_SCHEMES = ("hf://", "modelscope://")
Op = dict[str, Any]


class InjectionError(DamselflyError):
    """This Pod cannot be injected as the policy asks (a name clash, a bad annotation)."""


def pointer(*parts: str | int) -> str:
    """A JSON pointer; ``~`` and ``/`` inside a part are escaped (RFC 6901)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def model_urls(pod: dict[str, Any], policy: InjectionPolicy) -> list[str]:
    """The URLs of ``damselfly.io/models`` (comma-separated), checked."""
    raw = _annotations(pod).get(MODELS_ANNOTATION, "")
    urls = [u.strip() for u in str(raw).split(",") if u.strip()]
    if len(urls) > policy.max_models:
        raise InjectionError(
            f"{MODELS_ANNOTATION}: {len(urls)} models, at most {policy.max_models}"
        )
    for url in urls:
        if not url.startswith(MODEL_SCHEMES) or any(c.isspace() for c in url):
            raise InjectionError(
                f"{MODELS_ANNOTATION}: {url!r} is not an hf:// or modelscope:// URL"
            )
    return urls


def build_patch(pod: dict[str, Any], policy: InjectionPolicy) -> list[Op]:
    """Every operation, in an order that applies cleanly."""
    urls = model_urls(pod, policy)
    spec = pod.get("spec") or {}
    volumes = _volumes(policy, bool(urls))
    ops: list[Op] = []
    ops += _append(spec.get("volumes"), ("spec", "volumes"), volumes, clash=_volume_clash)
    for kind in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(kind) or []):
            ops += _container_ops(container, (kind, index), policy, bool(urls))
    ops += _append(spec.get("initContainers"), ("spec", "initContainers"), _fetchers(urls, policy))
    ops += _annotate(pod)
    return ops


def _container_ops(
    container: dict[str, Any], where: tuple[str, int], policy: InjectionPolicy, models: bool
) -> list[Op]:
    have_env = {e.get("name") for e in container.get("env") or []}
    env = [e for e in environment(policy) if e["name"] not in have_env]
    have_paths = {m.get("mountPath") for m in container.get("volumeMounts") or []}
    mounts = [m for m in _mounts(policy, models) if m["mountPath"] not in have_paths]
    base = ("spec", *where)
    return _append(container.get("env"), (*base, "env"), env) + _append(
        container.get("volumeMounts"), (*base, "volumeMounts"), mounts
    )


def _append(
    current: list[Any] | None,
    path: tuple[str | int, ...],
    items: list[Any],
    clash: Callable[[list[Any], list[Any]], str] | None = None,
) -> list[Op]:
    """Append ``items`` to the array at ``path``, creating it when the Pod has none."""
    if not items:
        return []
    if current is None:
        return [{"op": "add", "path": pointer(*path), "value": items}]
    if clash is not None and (problem := clash(current, items)):
        raise InjectionError(problem)
    return [{"op": "add", "path": pointer(*path, "-"), "value": item} for item in items]


def _volume_clash(current: list[dict[str, Any]], items: list[dict[str, Any]]) -> str:
    taken = {str(v.get("name")) for v in current} & {str(v["name"]) for v in items}
    return f"volume name {min(taken)!r} is already used by the Pod" if taken else ""


def _annotate(pod: dict[str, Any]) -> list[Op]:
    if not isinstance((pod.get("metadata") or {}).get("annotations"), dict):
        marker = {INJECTED_ANNOTATION: "true"}
        return [{"op": "add", "path": "/metadata/annotations", "value": marker}]
    path = pointer("metadata", "annotations", INJECTED_ANNOTATION)
    return [{"op": "add", "path": path, "value": "true"}]


def _annotations(pod: dict[str, Any]) -> dict[str, Any]:
    annotations = (pod.get("metadata") or {}).get("annotations")
    return annotations if isinstance(annotations, dict) else {}


def environment(policy: InjectionPolicy) -> list[dict[str, Any]]:
    """The variables every container gets; ``DAMSELFLY_NODE_IP`` first (see the rules)."""
    proxy = f"http://$({NODE_IP}):{policy.proxy_port}"
    no_proxy = ",".join(policy.no_proxy)
    env: list[dict[str, Any]] = [
        {"name": NODE_IP, "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}
    ]
    if policy.proxy:
        for name, value in (("HTTPS_PROXY", proxy), ("HTTP_PROXY", proxy), ("NO_PROXY", no_proxy)):
            env += [{"name": name, "value": value}, {"name": name.lower(), "value": value}]
    if policy.ca.source != "none":
        bundle = f"{policy.ca.mount_path.rstrip('/')}/{policy.ca.key}"
        for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            env.append({"name": name, "value": bundle})
    return env


def _mounts(policy: InjectionPolicy, models: bool) -> Iterator[dict[str, Any]]:
    if policy.ca.source != "none":
        yield {"name": CA_VOLUME, "mountPath": policy.ca.mount_path, "readOnly": True}
    if policy.socket_host_dir:
        yield {"name": SOCKET_VOLUME, "mountPath": policy.socket_mount_path}
    if models:
        yield {"name": MODELS_VOLUME, "mountPath": policy.models_mount_path}


def _volumes(policy: InjectionPolicy, models: bool) -> list[dict[str, Any]]:
    volumes = []
    ca = policy.ca
    if ca.source == "configMap":
        volumes.append({"name": CA_VOLUME, "configMap": {"name": ca.name}})
    elif ca.source == "secret":
        volumes.append({"name": CA_VOLUME, "secret": {"secretName": ca.name}})
    elif ca.source == "hostPath":
        volumes.append({"name": CA_VOLUME, "hostPath": {"path": ca.name, "type": "Directory"}})
    if policy.socket_host_dir:
        host = {"path": policy.socket_host_dir, "type": "DirectoryOrCreate"}
        volumes.append({"name": SOCKET_VOLUME, "hostPath": host})
    if models:
        empty = {"sizeLimit": policy.models_size_limit} if policy.models_size_limit else {}
        volumes.append({"name": MODELS_VOLUME, "emptyDir": empty})
    return volumes


def _fetchers(urls: list[str], policy: InjectionPolicy) -> list[dict[str, Any]]:
    """One init container per model (no shell, so a URL is never parsed by one)."""
    return [_fetcher(index, url, policy) for index, url in enumerate(urls)]


def _fetcher(index: int, url: str, policy: InjectionPolicy) -> dict[str, Any]:
    target = f"{policy.models_mount_path.rstrip('/')}/{url.split('://', 1)[1].strip('/')}"
    command = ["dfget", "-r", url, "-O", target, "--no-progress"]
    if policy.socket_host_dir:
        command += ["-e", f"{policy.socket_mount_path.rstrip('/')}/dfdaemon.sock"]
    return {
        "name": f"damselfly-models-{index}",
        "image": policy.image,
        "imagePullPolicy": policy.image_pull_policy,
        "command": command,
        "env": environment(policy),
        "volumeMounts": list(_mounts(policy, models=True)),
    }
