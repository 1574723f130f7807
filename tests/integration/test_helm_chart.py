"""The Helm chart, rendered by Helm's own Go engine (helm-python-sdk bundles it as a library;
nothing is downloaded): default values and the three ci/ values files render, pass
``helm lint --strict``, and every object is valid for Kubernetes 1.30 and 1.35."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from damselfly.config.injector import load as load_injector_settings
from damselfly.testing.kube import validate_everywhere

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "damselfly"
VALUES_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}  # CRDs: no bundled schema
PROXY_AND_MIRRORS = {"dfdaemon": {"proxyEnabled": True, "containerd": {"enabled": True}}}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values or {}, name="df", namespace="damselfly", is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if not path.endswith("NOTES.txt"):
            objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def values_of(path: Path) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(path.read_text())
    return values


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    spec = workload["spec"]["template"]["spec"]
    pods = spec["containers"] + spec.get("initContainers", [])
    return next(c for c in pods if c["name"] == name)


def test_ci_values_files_are_the_three_scenarios():
    assert [p.name for p in VALUES_FILES] == [
        "external-postgresql-values.yaml",
        "hostnetwork-mtls-values.yaml",
        "minimal-values.yaml",
    ]


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES], ids=lambda p: p and p.stem)
def test_every_rendered_object_is_valid_for_two_kubernetes_versions(values_file):
    values = values_of(values_file) if values_file else {}
    objects = render(values)
    assert len(objects) >= 6  # the minimal install: 3 workloads and their Services
    for obj in objects:
        if obj["kind"] in OPERATOR_KINDS:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            assert obj["spec"], obj
            continue
        validate_everywhere(obj)
    report = helm.lint(CHART, values, strict=True, kube_version="v1.30.0")
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_default_install_has_every_role_with_probes_and_stable_scheduler_addresses():
    objects = render()
    workloads = {
        **by_kind(objects, "Deployment"),
        **by_kind(objects, "StatefulSet"),
        **by_kind(objects, "DaemonSet"),
    }
    assert sorted(workloads) == [
        "df-damselfly-dfdaemon",
        "df-damselfly-injector",
        "df-damselfly-manager",
        "df-damselfly-scheduler",
        "df-damselfly-seed-peer",
    ]
    for workload in workloads.values():
        main = workload["spec"]["template"]["spec"]["containers"][0]
        assert main["livenessProbe"]["httpGet"]["path"] == "/healthz", workload["metadata"]
        assert main["readinessProbe"]
        assert main["resources"]["limits"]["memory"]
    scheduler = workloads["df-damselfly-scheduler"]
    headless = by_kind(objects, "Service")["df-damselfly-scheduler"]
    assert headless["spec"]["clusterIP"] == "None"
    assert scheduler["spec"]["serviceName"] == "df-damselfly-scheduler"
    daemon = container(workloads["df-damselfly-dfdaemon"], "dfdaemon")
    schedulers = [daemon["args"][i + 1] for i, a in enumerate(daemon["args"]) if a == "--scheduler"]
    assert schedulers == [
        f"df-damselfly-scheduler-{i}.df-damselfly-scheduler.damselfly.svc.cluster.local:8002"
        for i in range(3)
    ]
    assert "proxy" not in {p["name"] for p in daemon["ports"]}  # off by default: per-node CAs
    metrics_ports = {
        name: container(w, w["spec"]["template"]["spec"]["containers"][0]["name"])["ports"]
        for name, w in workloads.items()
    }
    assert {"name": "metrics", "containerPort": 8004} in metrics_ports["df-damselfly-scheduler"]
    assert {"name": "metrics", "containerPort": 4002} in metrics_ports["df-damselfly-dfdaemon"]
    assert {"name": "http", "containerPort": 8080} in metrics_ports["df-damselfly-manager"]


def test_daemon_set_mounts_host_paths_and_writes_containerd_mirrors():
    daemonset = by_kind(render(PROXY_AND_MIRRORS), "DaemonSet")["df-damselfly-dfdaemon"]
    volumes = {v["name"]: v for v in daemonset["spec"]["template"]["spec"]["volumes"]}
    assert volumes["store"]["hostPath"]["path"] == "/var/lib/damselfly/dfdaemon"
    assert volumes["socket"]["hostPath"]["path"] == "/var/run/damselfly"
    assert volumes["containerd-certs"]["hostPath"]["path"] == "/etc/containerd/certs.d"
    init = container(daemonset, "containerd-config")
    assert init["args"][:2] == ["damselfly", "containerd-config"]
    assert init["args"][2:6] == ["--registry", "docker.io", "--registry", "ghcr.io"]
    assert "http://$(NODE_IP):65001" in init["args"]


def test_sqlite_on_a_pvc_by_default_and_postgresql_from_a_secret():
    default = render()
    manager = by_kind(default, "Deployment")["df-damselfly-manager"]
    assert manager["spec"]["strategy"]["type"] == "Recreate"
    assert "df-damselfly-manager" in by_kind(default, "PersistentVolumeClaim")
    args = container(manager, "manager")["args"]
    assert args[args.index("--data-dir") + 1] == "/var/lib/damselfly/manager"
    assert "--database-url" not in args

    external = render(values_of(CHART / "ci" / "external-postgresql-values.yaml"))
    manager = by_kind(external, "Deployment")["df-damselfly-manager"]
    main = container(manager, "manager")
    assert manager["spec"]["replicas"] == 3
    assert "--database-url" not in main["args"]  # the password stays off the command line
    assert "--data-dir" not in main["args"]
    assert main["env"][0]["name"] == "DAMSELFLY_MANAGER_DATABASE_URL"
    secret = main["env"][0]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": "damselfly-postgres", "key": "database-url"}
    assert by_kind(external, "PersistentVolumeClaim") == {}


def test_host_network_and_mtls_mount_each_roles_secret():
    objects = render(values_of(CHART / "ci" / "hostnetwork-mtls-values.yaml"))
    daemonset = by_kind(objects, "DaemonSet")["df-damselfly-dfdaemon"]
    spec = daemonset["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    daemon = container(daemonset, "dfdaemon")
    assert daemon["args"][daemon["args"].index("--advertise-ip") + 1] == "$(NODE_IP)"
    assert daemon["args"][daemon["args"].index("--tls-dir") + 1] == "/etc/damselfly/tls"
    secrets = {}
    for kind in ("Deployment", "StatefulSet", "DaemonSet"):
        for name, workload in by_kind(objects, kind).items():
            for volume in workload["spec"]["template"]["spec"].get("volumes", []):
                if volume["name"] == "tls":
                    secrets[name] = volume["secret"]["secretName"]
    assert secrets == {  # the manager serves plain HTTP: no mTLS material
        "df-damselfly-scheduler": "damselfly-scheduler-tls",
        "df-damselfly-seed-peer": "damselfly-seed-peer-tls",
        "df-damselfly-dfdaemon": "damselfly-dfdaemon-tls",
    }
    policies = by_kind(objects, "NetworkPolicy")
    assert "df-damselfly-dfdaemon" not in policies  # no effect on the node's network
    grpc = policies["df-damselfly-scheduler"]["spec"]["ingress"][0]
    assert grpc["from"][1] == {"ipBlock": {"cidr": "10.240.0.0/16"}}  # daemons on node addresses
    assert len(by_kind(objects, "ServiceMonitor")) == 5
    rules = by_kind(objects, "PrometheusRule")["df-damselfly"]
    assert rules["spec"] == yaml.safe_load((ROOT / "deploy/prometheus/rules.yml").read_text())
    webhook = by_kind(objects, "MutatingWebhookConfiguration")["df-damselfly-injector"]
    assert webhook["webhooks"][0]["failurePolicy"] == "Fail"


def test_minimal_install_has_only_the_data_path():
    objects = render(values_of(CHART / "ci" / "minimal-values.yaml"))
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == ["DaemonSet", "Service", "StatefulSet"]
    daemonset = by_kind(objects, "DaemonSet")["df-damselfly-dfdaemon"]
    assert "initContainers" not in daemonset["spec"]["template"]["spec"]


def test_injector_config_is_loadable_and_webhook_targets_annotated_pods(tmp_path):
    objects = render()
    config = by_kind(objects, "ConfigMap")["df-damselfly-injector"]["data"]["injector.yaml"]
    (tmp_path / "injector.yaml").write_text(config)
    settings = load_injector_settings(tmp_path / "injector.yaml")
    assert settings.listen == "0.0.0.0:9443"
    assert settings.policy.proxy is False  # proxy off by default: no HTTPS_PROXY, no CA
    assert settings.policy.ca.source == "none"
    assert settings.policy.proxy_port == 65001
    assert settings.policy.failure_policy == "ignore"
    assert settings.policy.image == "ghcr.io/damselfly/damselfly:0.1.0"
    webhook = by_kind(objects, "MutatingWebhookConfiguration")["df-damselfly-injector"]["webhooks"][
        0
    ]
    assert webhook["clientConfig"]["service"]["path"] == "/mutate"
    assert webhook["failurePolicy"] == "Ignore"
    assert "damselfly.io/inject" in webhook["matchConditions"][0]["expression"]
    probe = container(by_kind(objects, "Deployment")["df-damselfly-injector"], "injector")
    assert probe["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_helm_test_hook_checks_every_role_health():
    pod = by_kind(render(), "Pod")["df-damselfly-test-health"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    urls = [a for a in pod["spec"]["containers"][0]["command"] if a.startswith("http://")]
    assert urls == [
        "http://df-damselfly-scheduler-0.df-damselfly-scheduler:8004/healthz",
        "http://df-damselfly-manager:8080/healthz",
        "http://df-damselfly-seed-peer-0.df-damselfly-seed-peer:4002/healthz",
    ]


def test_chart_copies_of_dashboard_and_rules_match_deploy():
    for copy, original in (
        ("files/rules.yml", "deploy/prometheus/rules.yml"),
        ("files/damselfly.json", "deploy/grafana/damselfly.json"),
    ):
        assert (CHART / copy).read_bytes() == (ROOT / original).read_bytes(), copy


def test_readme_values_table_is_up_to_date():
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "helm_values_doc.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    readme = (CHART / "README.md").read_text()
    assert "| `dfdaemon.proxyPort` | int | `65001` |" in readme


def test_containerd_mirrors_without_the_daemon_proxy_are_refused():
    values = {"dfdaemon": {"containerd": {"enabled": True}}}
    with pytest.raises(helm.HelmRenderError, match=r"needs dfdaemon\.proxyEnabled"):
        render(values)


def test_proxy_opens_the_node_port_and_the_injector_points_pods_at_it(tmp_path):
    objects = render(PROXY_AND_MIRRORS)
    daemon = container(by_kind(objects, "DaemonSet")["df-damselfly-dfdaemon"], "dfdaemon")
    assert daemon["args"][daemon["args"].index("--proxy-listen") + 1] == "0.0.0.0:65001"
    proxy = next(p for p in daemon["ports"] if p["name"] == "proxy")
    assert proxy == {"name": "proxy", "containerPort": 65001, "hostPort": 65001}
    config = by_kind(objects, "ConfigMap")["df-damselfly-injector"]["data"]["injector.yaml"]
    (tmp_path / "injector.yaml").write_text(config)
    policy = load_injector_settings(tmp_path / "injector.yaml").policy
    assert policy.proxy is True
    assert policy.ca.source == "configMap"
    open_ports = by_kind(objects, "NetworkPolicy")["df-damselfly-dfdaemon"]["spec"]["ingress"]
    assert {"ports": [{"port": "proxy"}]} in open_ports


# Every command line the chart runs goes through the real argparse parser of its command
# (parse_args: an unknown or renamed flag, or a missing value, fails), and the daemon's flags
# through its settings model, with the Pod's $(VAR)s replaced by plausible values.
POD_VARIABLES = {"$(POD_IP)": "10.1.2.3", "$(NODE_IP)": "10.0.0.5", "$(NODE_NAME)": "node-1"}


def parse_command_line(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from damselfly.cli import damselfly, dfdaemon
    from damselfly.config.daemon import load as load_daemon_settings

    program, *argv = (POD_VARIABLES.get(a, a) for a in args)
    parser = {"damselfly": damselfly.build_parser, "dfdaemon": dfdaemon.build_parser}[program]
    try:
        parsed = parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{program} {' '.join(argv)}: {capsys.readouterr().err.strip()}")
    if program == "dfdaemon":
        load_daemon_settings(None, {}, dfdaemon.overrides(parsed))


def command_lines(objects: list[dict[str, Any]]) -> dict[str, list[str]]:
    lines = {}
    for kind in ("Deployment", "StatefulSet", "DaemonSet"):
        for workload in by_kind(objects, kind).values():
            spec = workload["spec"]["template"]["spec"]
            for c in spec["containers"] + spec.get("initContainers", []):
                lines[c["name"]] = c["args"]
    return lines


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES], ids=lambda p: p and p.stem)
def test_every_command_line_the_chart_runs_parses_with_the_real_cli(values_file, capsys):
    lines = command_lines(render(values_of(values_file) if values_file else {}))
    assert {"dfdaemon", "seed-peer", "scheduler"} <= set(lines)
    for args in lines.values():
        parse_command_line(args, capsys)


def test_a_renamed_flag_fails_the_command_line_check(capsys):
    with pytest.raises(pytest.fail.Exception, match="unrecognized arguments: --metrics-port"):
        parse_command_line(["damselfly", "scheduler", "--metrics-port", "8004"], capsys)


def test_proxy_command_lines_parse_with_the_real_cli(capsys):
    lines = command_lines(render(PROXY_AND_MIRRORS))
    assert {"dfdaemon", "containerd-config"} <= set(lines)
    for args in lines.values():
        parse_command_line(args, capsys)
