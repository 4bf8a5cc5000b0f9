"""The deployment as written: manifests that Kubernetes' schemas accept, flows' cluster arguments that
fit the topics' partitions, alert rules that read only metrics the processes export, a compose file
naming every service, and entry commands that exist in the project. Nothing here runs a container."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import promql_parser
import pytest
import typer
import yaml
from prometheus_client import REGISTRY

import bytewax.connectors.kafka  # noqa: F401  registers bytewax_kafka_consumer_lag, as every flow does
import flows.metrics  # noqa: F401  the flows' metrics, in the default registry bytewax serves
import sinks.circuit  # noqa: F401  the circuit breakers' metrics, likewise
from gateway import metrics as gateway_metrics
from kernel.topics import CHANNELS, LANES
from notifyflow import cli

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S_VERSION = "1.31.0"  # the oldest Kubernetes the manifests are meant for
# bytewax 0.21's own metrics (src/inputs.rs, operators.rs, outputs.rs, timely.rs: OpenTelemetry instruments
# exported with the "bytewax" namespace, counters with _total, histograms with _bucket/_count/_sum); the
# integration test test_metrics_endpoint.py scrapes a running flow for them.
BYTEWAX_COUNTERS = ("item_inp_count", "item_out_count")
BYTEWAX_HISTOGRAMS = ("inp_part_next_batch_duration_seconds", "inp_part_next_batch_size", "snapshot_duration_seconds",
                      "flat_map_batch_duration_seconds", "stateful_batch_on_batch_duration_seconds",
                      "stateful_batch_on_notify_duration_seconds", "stateful_batch_on_eof_duration_seconds",
                      "stateful_batch_notify_at_duration_seconds", "out_part_write_batch_duration_seconds",
                      "partd_write_duration_seconds", "partd_load_builder_duration_seconds")
SERVERS = {"kafka", "postgres", "redis", "clickhouse"}


def load_generator():
    spec = importlib.util.spec_from_file_location("deploy_generate", DEPLOY / "generate.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # its dataclasses look it up
    spec.loader.exec_module(module)
    return module


def manifests() -> list[tuple[str, dict]]:
    return [(path.relative_to(DEPLOY).as_posix(), doc) for path in sorted((DEPLOY / "k8s").rglob("*.yaml"))
            if path.name != "kustomization.yaml" for doc in yaml.safe_load_all(path.read_text()) if doc]


def of_kind(kind: str) -> list[dict]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


def config() -> dict[str, str]:
    [config_map] = [doc for doc in of_kind("ConfigMap") if doc["metadata"]["name"] == "notifyflow-config"]
    return config_map["data"]


def env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def generated_objects() -> list[dict]:
    """What the kustomization's generators make, as kustomize would (names before their hash suffix)."""
    return [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "notifyflow-secrets"}, "type": "Opaque",
             "stringData": env_file(DEPLOY / "secrets.env.example")},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "notifyflow-prometheus-rules"},
             "data": {"alerts.yaml": (DEPLOY / "prometheus" / "alerts.yaml").read_text()}}]


@pytest.mark.parametrize("where,doc", [*manifests(), *(("generated", d) for d in generated_objects())],
                         ids=lambda value: value if isinstance(value, str) else value["metadata"]["name"])
def test_every_manifest_validates_against_the_kubernetes_schemas(where, doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # the wheel ships the schemas: no network


def test_the_kustomizations_name_files_that_exist_and_every_manifest():
    root = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    flows = yaml.safe_load((DEPLOY / "k8s" / "flows" / "kustomization.yaml").read_text())
    listed = {(DEPLOY / r).resolve() for r in root["resources"]} | {(DEPLOY / "k8s" / "flows" / r).resolve()
                                                                   for r in flows["resources"]}
    written = {path.resolve() for path in (DEPLOY / "k8s").rglob("*.yaml") if path.name != "kustomization.yaml"}
    assert written <= listed | {p.parent for p in written}
    assert all(path.exists() for path in listed)
    assert (DEPLOY / "secrets.env.example").exists() and (DEPLOY / "prometheus" / "alerts.yaml").exists()
    # The Secret the workloads read holds every secret setting the processes need.
    assert {"DATABASE_URL", "REDIS_URL", "CLICKHOUSE_URL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD",
            "GATEWAY_JWT_SECRET", "UNSUBSCRIBE_SECRET", "ANALYTICS_SECRET"} \
        <= env_file(DEPLOY / "secrets.env.example").keys()


def test_the_committed_flow_manifests_are_the_generators_output():
    generator = load_generator()
    assert set(generator.CHANNELS) == set(CHANNELS) and generator.LANES == LANES
    wanted = generator.manifests()
    committed = {path.name: path.read_text() for path in (DEPLOY / "k8s" / "flows").glob("*.yaml")}
    assert committed == wanted, "run `python deploy/generate.py` and commit deploy/k8s/flows/"


def flow_sets() -> list[dict]:
    return [s for s in of_kind("StatefulSet") if s["spec"]["template"]["spec"]["containers"][0]["command"][:3]
            == ["python", "-m", "bytewax.run"]]


def env_of(container: dict) -> dict[str, dict | str]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_every_flow_and_lane_has_its_cluster_and_its_arguments_fit_the_partitions():
    partitions = int(config()["NOTIFYFLOW_PARTITIONS"])
    services = {s["metadata"]["name"]: s for s in of_kind("Service")}
    targets = set()
    for flow in flow_sets():
        name, spec = flow["metadata"]["name"], flow["spec"]
        pod = spec["template"]["spec"]
        container, env = pod["containers"][0], env_of(pod["containers"][0])
        targets.add(container["command"][3])
        processes, workers = spec["replicas"], int(env["BYTEWAX_WORKERS_PER_PROCESS"])
        assert processes * workers <= partitions, name
        headless = services[spec["serviceName"]]["spec"]
        assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"]
        if processes > 1:
            port = next(p["containerPort"] for p in container["ports"] if p["name"] == "cluster")
            assert env["BYTEWAX_ADDRESSES"].split(";") == [f"{name}-{i}.{spec['serviceName']}:{port}"
                                                           for i in range(processes)]
            assert env["BYTEWAX_STATEFULSET_NAME"] == name
            assert env["BYTEWAX_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        else:
            assert "BYTEWAX_ADDRESSES" not in env
        # One recovery volume per process, partitioned once across the first processes.
        [claim] = spec["volumeClaimTemplates"]
        assert {"name": claim["metadata"]["name"], "mountPath": env["BYTEWAX_RECOVERY_DIRECTORY"]} \
            in container["volumeMounts"]
        [init] = [c for c in pod["initContainers"] if c["name"] == "recovery-store"]
        # Fewer partitions than processes once a flow has grown; more only after moving partitions (RUNBOOK.md).
        assert 1 <= int(env_of(init)["RECOVERY_PARTITIONS"]) <= processes
        assert {"wait-for-setup", "recovery-store"} == {c["name"] for c in pod["initContainers"]}
        assert container["readinessProbe"]["httpGet"]["port"] == 3030 == container["livenessProbe"]["httpGet"]["port"]
        assert container["resources"]["requests"] and container["resources"]["limits"]
    assert targets == {"flows.notifications:flow"} | {f"flows.delivery:build({c!r}, {l!r})"
                                                      for c in CHANNELS for l in LANES}


def test_bytewax_run_takes_the_process_id_from_the_pod_name_and_the_addresses_from_the_service(monkeypatch):
    import bytewax.run

    [notifications] = [s for s in flow_sets() if s["metadata"]["name"] == "notifications"]
    env = env_of(notifications["spec"]["template"]["spec"]["containers"][0])
    monkeypatch.setattr(os, "environ", {**{k: v for k, v in env.items() if isinstance(v, str)},
                                        "BYTEWAX_POD_NAME": "notifications-1"})
    monkeypatch.setattr(sys, "argv", ["bytewax.run", "flows.notifications:flow"])
    args = bytewax.run._parse_args()
    assert args.process_id == 1
    assert args.addresses == env["BYTEWAX_ADDRESSES"]
    assert args.workers_per_process == int(env["BYTEWAX_WORKERS_PER_PROCESS"])
    assert str(args.recovery_directory) == env["BYTEWAX_RECOVERY_DIRECTORY"]


def test_the_recovery_init_creates_each_process_partition_once(tmp_path):
    [notifications] = [s for s in flow_sets() if s["metadata"]["name"] == "notifications"]
    [init] = [c for c in notifications["spec"]["template"]["spec"]["initContainers"] if c["name"] == "recovery-store"]
    script, partitions = init["command"][2], env_of(init)["RECOVERY_PARTITIONS"]

    def run(ordinal: int) -> str:
        directory = tmp_path / f"volume-{ordinal}"
        directory.mkdir(exist_ok=True)
        env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(tmp_path),
               "POD_NAME": f"notifications-{ordinal}", "RECOVERY_PARTITIONS": partitions,
               "BYTEWAX_RECOVERY_DIRECTORY": str(directory)}
        done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    processes = int(partitions)
    for ordinal in range(processes):
        assert "created recovery partition" in run(ordinal)
        assert [p.name for p in (tmp_path / f"volume-{ordinal}").iterdir()] == [f"part-{ordinal}.sqlite3"]
    first = (tmp_path / "volume-0" / "part-0.sqlite3").read_bytes()
    assert "resuming" in run(0)  # a restart keeps the store as it is
    assert (tmp_path / "volume-0" / "part-0.sqlite3").read_bytes() == first
    assert "holds no recovery partition" in run(processes)  # a process added later
    assert not any((tmp_path / f"volume-{processes}").iterdir())


def exported_metrics() -> set[str]:
    """Every sample name the processes can export: the default registry (flows, circuits, bytewax's
    Kafka lag gauge, the process collector), the gateway's registry, and bytewax's own metrics."""
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",),
                "histogram": ("_bucket", "_count", "_sum", "_created"),
                "summary": ("", "_count", "_sum", "_created"), "info": ("_info",)}
    names = {family.name + suffix for registry in (REGISTRY, gateway_metrics.REGISTRY)
             for family in registry.collect() for suffix in suffixes[family.type]}
    names |= {f"bytewax_{name}_total" for name in BYTEWAX_COUNTERS}
    return names | {f"bytewax_{name}{suffix}" for name in BYTEWAX_HISTOGRAMS
                    for suffix in ("_bucket", "_count", "_sum")}


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())["groups"]
            for rule in group["rules"]]


def test_every_metric_an_alert_reads_is_exported_by_a_process():
    exported = exported_metrics()
    for rule in alert_rules():
        used = set()
        promql_parser.walk(promql_parser.parse(rule["expr"]),
                           lambda node: used.add(node.name) if isinstance(node, promql_parser.VectorSelector) else None)
        assert used and used <= exported, f"{rule['alert']} reads {sorted(used - exported)}, which nothing exports"


def test_the_alerts_cover_what_on_call_needs_and_each_has_its_runbook_section():
    rules = {rule["alert"]: rule for rule in alert_rules()}
    runbook = (DEPLOY / "RUNBOOK.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
               for line in runbook.splitlines() if line.startswith("## ")}
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        assert rule["annotations"]["runbook"].split("#")[1] in anchors, name
    watched = " ".join(rule["expr"] for rule in rules.values())
    for metric in ("bytewax_kafka_consumer_lag", "notifyflow_dead_letters_total", "notifyflow_statuses_total",
                   "notifyflow_delivery_latency_seconds_bucket", "notifyflow_circuit_open",
                   "bytewax_snapshot_duration_seconds_count", "notifyflow_gateway_connections"):
        assert metric in watched, metric
    assert "0.9995" in rules["NotifyflowDeliverySuccessLow"]["expr"]
    assert "> 0.1" in rules["NotifyflowLatencyP99High"]["expr"]


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_the_compose_file_parses_and_names_every_service():
    services = compose()["services"]
    deliveries = {f"delivery-{c.replace('_', '-')}-{l}" for c in CHANNELS for l in LANES}
    assert set(services) == SERVERS | {"setup", "notifications", "analytics", "gateway"} | deliveries
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    for name, service in services.items():
        if name not in SERVERS:
            assert service["image"] == "notifyflow:local" and service["build"]["context"] == "..", name
        if name in deliveries | {"notifications", "analytics", "gateway"}:
            assert service["depends_on"]["setup"] == {"condition": "service_completed_successfully"}, name
    assert services["setup"]["depends_on"].keys() == SERVERS
    assert {"flows.notifications:flow"} | {f"flows.delivery:build({c!r}, {l!r})" for c in CHANNELS for l in LANES} \
        == {services[name]["command"][0] for name in deliveries | {"notifications"}}
    assert services["notifications"]["environment"]["NOTIFYFLOW_PARTITIONS"] == "4"


def image_commands() -> list[list[str]]:
    """Every command a container of the image runs, in the manifests and the compose file."""
    commands = []
    for _, doc in manifests():
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("initContainers", []) + pod.get("containers", []):
            command = container["command"]
            commands.append(shlex.split(command[2].split(";")[0].removeprefix("until "))
                            if command[:2] == ["sh", "-c"] and "notifyflow" in command[2] else command)
    for name, service in compose()["services"].items():
        if name in SERVERS:
            continue
        command = service["command"]
        commands.append(["python", "-m", "bytewax.run", *command] if "entrypoint" in service else command)
    return [c for c in commands if c[:2] != ["sh", "-c"]]


def check_flow_target(target: str) -> None:
    """bytewax.run's import string: a module's attribute, or a call of its factory with literal arguments."""
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    call = ast.parse(attribute, mode="eval").body
    if isinstance(call, ast.Call):
        factory, args = getattr(module, call.func.id), [ast.literal_eval(arg) for arg in call.args]
        assert callable(factory)
        channel, lane = args
        assert channel in CHANNELS and lane in LANES
    else:
        assert callable(getattr(module, "__getattr__")) and attribute == "flow"  # built when bytewax asks


def check_cli(args: list[str]) -> None:
    """Parse the arguments as `notifyflow` would, down to the subcommand, without running it."""
    command = typer.main.get_command(cli.app)  # typer brings its own click: groups are told by what they do
    ctx = command.make_context("notifyflow", list(args))
    while hasattr(command, "resolve_command") and (rest := [*ctx._protected_args, *ctx.args]):
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)


def test_the_images_entry_commands_exist_in_the_project():
    commands = image_commands()
    assert len(commands) > 40
    for command in commands:
        if command[:3] == ["python", "-m", "bytewax.run"]:
            check_flow_target(command[3])
        else:
            assert command[0] == "notifyflow", command
            check_cli(command[1:])
    assert 'notifyflow = "notifyflow.cli:main"' in (REPO / "pyproject.toml").read_text()


def test_the_image_is_multi_stage_non_root_and_installs_no_embedded_servers():
    dockerfile = (REPO / "Dockerfile").read_text()
    stages = list(re.finditer(r"^FROM .*$", dockerfile, re.M))
    assert len(stages) == 2 and stages[0].group().endswith(" AS build")
    run_stage = dockerfile[stages[1].start():]
    assert "build-essential" not in run_stage and "COPY --from=build /opt/notifyflow" in run_stage
    assert re.search(r"^USER 10001", run_stage, re.M)
    assert "pip install ." in dockerfile and "[local" not in dockerfile
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    needed = {"README.md", "web", "pyproject.toml"} | {
        name.rstrip("*") for name in re.findall(r'"(\w+)\*?"', (REPO / "pyproject.toml").read_text().split(
            "[tool.setuptools.packages.find]")[1].split("[")[0])}
    assert not needed & ignored
