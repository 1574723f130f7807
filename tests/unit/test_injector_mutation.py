"""The injector's decision and JSONPatch, sans-IO: every patch is applied to the Pod and the
result checked against the Kubernetes schemas of two minor versions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from damselfly.cli.dfget_args import build_parser
from damselfly.config.injector import CaBundle, InjectionPolicy
from damselfly.injector.mutation import Outcome, mutate, review
from damselfly.injector.patch import pointer
from damselfly.testing.kube import (
    admission_review,
    apply_answer,
    env_of,
    patch_of,
    pod,
    validate_everywhere,
)

INJECT = {"damselfly.io/inject": "true"}
POLICY = InjectionPolicy(namespaces=["ml", "team-*"], excluded_namespaces=["team-secret"])
PROXY = "http://$(DAMSELFLY_NODE_IP):65001"


def inject(obj: dict, policy: InjectionPolicy = POLICY) -> tuple[dict, Outcome]:
    verdict = review(admission_review(obj), policy)
    assert verdict.response["response"]["uid"]
    return verdict.response, verdict.outcome


def test_annotated_pod_in_policy_gets_proxy_ca_and_socket():
    obj = pod(annotations=INJECT)
    answer, outcome = inject(obj)
    assert outcome is Outcome.INJECTED
    assert answer["response"]["allowed"] is True
    patched = apply_answer(obj, answer)
    validate_everywhere(patched)
    env = env_of(patched["spec"]["containers"][0])
    assert env["DAMSELFLY_NODE_IP"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    assert env["HTTPS_PROXY"] == env["HTTP_PROXY"] == env["https_proxy"] == PROXY
    assert ".svc" in env["NO_PROXY"].split(",")
    assert env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"] == "/etc/damselfly/ca/ca.crt"
    names = [e["name"] for e in patched["spec"]["containers"][0]["env"]]
    assert names.index("DAMSELFLY_NODE_IP") < names.index("HTTPS_PROXY")  # $(VAR) order
    volumes = {v["name"]: v for v in patched["spec"]["volumes"]}
    assert volumes["damselfly-ca"] == {
        "name": "damselfly-ca",
        "configMap": {"name": "damselfly-ca"},
    }
    assert volumes["damselfly-socket"]["hostPath"]["path"] == "/var/run/damselfly"
    assert patched["metadata"]["annotations"]["damselfly.io/injected"] == "true"
    assert "initContainers" not in patched["spec"]


def test_without_the_daemon_proxy_only_the_socket_and_node_address_are_injected():
    policy = InjectionPolicy(namespaces=["*"], proxy=False, ca=CaBundle(source="none"))
    obj = pod(annotations=INJECT)
    answer, outcome = inject(obj, policy)
    assert outcome is Outcome.INJECTED
    patched = apply_answer(obj, answer)
    validate_everywhere(patched)
    env = env_of(patched["spec"]["containers"][0])
    assert sorted(env) == ["DAMSELFLY_NODE_IP"]
    assert [v["name"] for v in patched["spec"]["volumes"]] == ["damselfly-socket"]


@pytest.mark.parametrize(
    ("namespace", "annotations", "expected"),
    [
        ("default", INJECT, Outcome.OUTSIDE_POLICY),
        ("team-secret", INJECT, Outcome.OUTSIDE_POLICY),
        ("team-a", INJECT, Outcome.INJECTED),
        ("ml", None, Outcome.NOT_REQUESTED),
        ("ml", {"damselfly.io/inject": "false"}, Outcome.NOT_REQUESTED),
        ("ml", {"damselfly.io/inject": "true", "damselfly.io/injected": "true"},
         Outcome.ALREADY_INJECTED),
    ],
)  # fmt: skip
def test_only_annotated_pods_of_allowed_namespaces_are_patched(namespace, annotations, expected):
    answer, outcome = inject(pod(namespace=namespace, annotations=annotations))
    assert outcome is expected
    assert answer["response"]["allowed"] is True
    assert bool(patch_of(answer)) is (expected is Outcome.INJECTED)


def test_a_pod_injected_once_is_not_changed_again():
    obj = pod(annotations=INJECT)
    once = apply_answer(obj, inject(obj)[0])
    answer, outcome = inject(once)
    assert outcome is Outcome.ALREADY_INJECTED
    assert patch_of(answer) == []


def test_updates_and_other_kinds_are_ignored():
    obj = pod(annotations=INJECT)
    for request in (admission_review(obj, operation="UPDATE"), admission_review(obj, kind="Job")):
        verdict = review(request, POLICY)
        assert verdict.outcome is Outcome.IGNORED
        assert patch_of(verdict.response) == []


def test_containers_without_env_or_mounts_get_the_arrays_created():
    containers = [
        {"name": "bare", "image": "busybox"},
        {"name": "full", "image": "busybox", "env": [{"name": "HTTPS_PROXY", "value": "mine"}],
         "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
    ]  # fmt: skip
    obj = pod(annotations=INJECT, containers=containers, volumes=[{"name": "data", "emptyDir": {}}])
    answer, _ = inject(obj)
    ops = patch_of(answer)
    created = {op["path"]: op["value"] for op in ops if not op["path"].endswith("-")}
    assert isinstance(created["/spec/containers/0/env"], list)  # a new array, not env/-
    assert isinstance(created["/spec/containers/0/volumeMounts"], list)
    assert any(op["path"] == "/spec/containers/1/env/-" for op in ops)
    assert any(op["path"] == "/spec/volumes/-" for op in ops)
    patched = apply_answer(obj, answer)
    validate_everywhere(patched)
    bare, full = patched["spec"]["containers"]
    assert env_of(bare)["HTTPS_PROXY"] == PROXY
    assert env_of(full)["HTTPS_PROXY"] == "mine"  # the user's value is kept
    assert env_of(full)["HTTP_PROXY"] == PROXY
    assert full["volumeMounts"][0]["mountPath"] == "/data"
    assert patched["spec"]["volumes"][0]["name"] == "data"


def test_models_annotation_adds_one_fetcher_per_model_and_a_shared_volume():
    annotations = {**INJECT, "damselfly.io/models": "hf://org/model, modelscope://qwen/q"}
    init = [{"name": "setup", "image": "busybox"}]
    obj = pod(annotations=annotations, initContainers=init)
    policy = POLICY.model_copy(update={"models_size_limit": "50Gi"})
    patched = apply_answer(obj, inject(obj, policy)[0])
    validate_everywhere(patched)
    names = [c["name"] for c in patched["spec"]["initContainers"]]
    assert names == ["setup", "damselfly-models-0", "damselfly-models-1"]
    fetch = patched["spec"]["initContainers"][1]
    assert fetch["command"][:5] == ["dfget", "-r", "hf://org/model", "-O", "/models/org/model"]
    assert fetch["command"][-2:] == ["-e", "/var/run/damselfly/dfdaemon.sock"]
    assert patched["spec"]["initContainers"][2]["command"][4] == "/models/qwen/q"
    parsed = build_parser({}).parse_args(fetch["command"][1:])  # the real dfget accepts it
    assert (parsed.recursive, parsed.output) == (True, "/models/org/model")
    models = next(v for v in patched["spec"]["volumes"] if v["name"] == "damselfly-models")
    assert models["emptyDir"] == {"sizeLimit": "50Gi"}
    for container in patched["spec"]["containers"] + patched["spec"]["initContainers"]:
        assert "/models" in {m["mountPath"] for m in container["volumeMounts"]}


@pytest.mark.parametrize(("failure_policy", "allowed"), [("ignore", True), ("fail", False)])
def test_a_pod_that_cannot_be_injected_fails_open_or_closed(failure_policy, allowed):
    obj = pod(annotations=INJECT, volumes=[{"name": "damselfly-ca", "emptyDir": {}}])
    policy = POLICY.model_copy(update={"failure_policy": failure_policy})
    answer, outcome = inject(obj, policy)
    assert outcome is Outcome.FAILED
    assert answer["response"]["allowed"] is allowed
    assert "'damselfly-ca' is already used" in answer["response"]["status"]["message"]
    assert patch_of(answer) == []


@pytest.mark.parametrize(
    "models",
    ["https://example.com/x", "hf://org/model with space", ",".join(["hf://o/m"] * 17)],
)
def test_bad_models_annotation_is_a_failure_not_a_crash(models):
    answer, outcome = inject(pod(annotations={**INJECT, "damselfly.io/models": models}))
    assert outcome is Outcome.FAILED
    assert answer["response"]["allowed"] is True
    assert "damselfly.io/models" in answer["response"]["status"]["message"]


def test_a_pod_of_unexpected_shape_is_a_failure_not_a_crash():
    obj = pod(annotations=INJECT)
    obj["spec"]["containers"] = ["not-an-object"]
    answer, outcome = inject(obj)
    assert outcome is Outcome.FAILED
    assert "unexpected Pod shape" in answer["response"]["status"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "AdmissionReview",
        {"kind": "Pod"},
        {"kind": "AdmissionReview"},
        {"kind": "AdmissionReview", "request": {"uid": ""}},
        {"kind": "AdmissionReview", "request": {"uid": "u-1", "object": "x"}},
        {"kind": "AdmissionReview", "request": {"uid": "u-2", "object": {"metadata": 3}}},
    ],
)
def test_malformed_reviews_are_allowed_with_a_message(body):
    answer = mutate(body, POLICY)
    response = answer["response"]
    assert response["allowed"] is True
    assert response["status"]["message"].startswith("malformed AdmissionReview")
    assert answer["kind"] == "AdmissionReview"
    assert "patch" not in response
    if isinstance(body, dict) and body.get("request", {}).get("uid"):
        assert response["uid"] == body["request"]["uid"]


def test_ca_from_a_secret_or_no_ca():
    secret = POLICY.model_copy(update={"ca": CaBundle(source="secret", name="bundle")})
    patched = apply_answer(pod(annotations=INJECT), inject(pod(annotations=INJECT), secret)[0])
    validate_everywhere(patched)
    assert {"name": "damselfly-ca", "secret": {"secretName": "bundle"}} in patched["spec"][
        "volumes"
    ]
    none = POLICY.model_copy(update={"ca": CaBundle(source="none"), "socket_host_dir": ""})
    patched = apply_answer(pod(annotations=INJECT), inject(pod(annotations=INJECT), none)[0])
    assert "volumes" not in patched["spec"]
    assert "SSL_CERT_FILE" not in env_of(patched["spec"]["containers"][0])


def test_pointer_escapes_slash_and_tilde():
    assert pointer("metadata", "annotations", "damselfly.io/injected") == (
        "/metadata/annotations/damselfly.io~1injected"
    )
    assert pointer("a~b", 0) == "/a~0b/0"


def _container(index: int, env: bool, mounts: bool) -> dict:
    container: dict = {"name": f"c{index}", "image": "busybox"}
    if env:
        container["env"] = [{"name": "HTTPS_PROXY", "value": "mine"}] if index % 2 else []
    if mounts:
        container["volumeMounts"] = [{"name": "data", "mountPath": f"/data{index}"}]
    return container


@settings(max_examples=40, deadline=None)
@given(
    shapes=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=3),
    init_shapes=st.lists(st.tuples(st.booleans(), st.booleans()), max_size=2),
    has_annotations=st.booleans(),
    models=st.sampled_from(["", "hf://org/model", "hf://a/b,modelscope://c/d"]),
)
def test_any_pod_shape_gets_a_patch_that_applies_and_validates(
    shapes, init_shapes, has_annotations, models
):
    annotations = {**INJECT, "other": "x"} if has_annotations else dict(INJECT)
    if models:
        annotations["damselfly.io/models"] = models
    spec = {"volumes": [{"name": "data", "emptyDir": {}}]}
    if init_shapes:
        spec["initContainers"] = [_container(9 + i, *s) for i, s in enumerate(init_shapes)]
    containers = [_container(i, *s) for i, s in enumerate(shapes)]
    obj = pod(annotations=annotations, containers=containers, **spec)
    answer, outcome = inject(obj)
    assert outcome is Outcome.INJECTED
    patched = apply_answer(obj, answer)
    validate_everywhere(patched)
    for container in patched["spec"]["containers"] + patched["spec"].get("initContainers", []):
        assert env_of(container)["HTTP_PROXY"] == PROXY
    assert inject(patched)[1] is Outcome.ALREADY_INJECTED
