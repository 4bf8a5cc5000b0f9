"""Writes the flows' Kubernetes manifests (deploy/k8s/flows/) from one table, the cluster layout below:
the notification flow, one delivery flow per channel and lane (20) and the analytics process.

    python deploy/generate.py           # rewrite deploy/k8s/flows/ (commit the result)
    python deploy/generate.py --check   # exit 1 if the committed files differ from what this writes

Each flow is a StatefulSet whose pods form one bytewax cluster (`bytewax.run` reads the process id from
the pod's name and the addresses from BYTEWAX_ADDRESSES, the pods' names in the headless service), with
one recovery volume per process. Processes times workers never exceed the topics' partitions
(NOTIFYFLOW_PARTITIONS in k8s/config.yaml): a worker without a partition would idle. Python holds the
GIL, so a flow scales by processes; a second worker per process adds little.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
OUT = DEPLOY / "k8s" / "flows"
CONFIG = DEPLOY / "k8s" / "config.yaml"
CHANNELS = ("in_app", "push", "email", "sms", "webhook")  # kernel.topics.CHANNELS; the test checks
LANES = ("critical", "high", "normal", "bulk")
IMAGE = "notifyflow"  # deploy/kustomization.yaml's `images:` names the registry and tag
CLUSTER_PORT, METRICS_PORT, DASHBOARD_PORT = 2101, 3030, 8100
RECOVERY = "/var/lib/notifyflow/recovery"
PUSH_KEYS = "/var/run/secrets/notifyflow"
SNAPSHOT_S = "5"
# Snapshots kept longer than needed to resume, so volume snapshots of every process taken within this
# many seconds of each other still share a snapshot to restore from (RUNBOOK.md).
BACKUP_S = "600"


@dataclass(frozen=True)
class Cluster:
    processes: int = 1
    workers: int = 1
    cpu: str = "500m"        # requested per process
    cpu_limit: str = "1"     # librdkafka's threads and bursts after a restart use more than the request
    memory: str = "512Mi"    # requested and the limit
    # Partitions of the flow's recovery store, fixed when it was first created: one on each of the first
    # processes. Keep it when changing `processes` later (RUNBOOK.md "Scaling out"); None: `processes`.
    store: int | None = None

    @property
    def recovery_partitions(self) -> int:
        return self.store or self.processes


# The cluster layout. Capacity for the seed's scale: README "Capacity plan"; change it here and regenerate.
NOTIFICATIONS = Cluster(processes=2, cpu="1", cpu_limit="2", memory="1Gi")
DELIVERY = {(channel, lane): Cluster() for channel in CHANNELS for lane in LANES}
ANALYTICS = Cluster(cpu="1", cpu_limit="2", memory="1Gi")

# Creates this process's recovery partition once: the store has RECOVERY_PARTITIONS partitions, one on
# each of the first processes' volumes; a process added later holds none (bytewax allows it), and a
# volume that holds a partition is resumed from, never reset.
RECOVERY_INIT = """set -eu
dir="$BYTEWAX_RECOVERY_DIRECTORY"
i="${POD_NAME##*-}"
if ls "$dir"/part-*.sqlite3 >/dev/null 2>&1; then
  echo "process $i: resuming from its recovery partition"; exit 0
fi
if [ "$i" -ge "$RECOVERY_PARTITIONS" ]; then
  echo "process $i: holds no recovery partition (the store has $RECOVERY_PARTITIONS)"; exit 0
fi
tmp="$(mktemp -d)"
python -m bytewax.recovery "$tmp" "$RECOVERY_PARTITIONS"
mv "$tmp/part-$i.sqlite3" "$dir/"
rm -r "$tmp"
echo "process $i: created recovery partition $i of $RECOVERY_PARTITIONS"
"""
# A release's flows start once its migrations and topics are there (the setup Job makes them).
WAIT_FOR_SETUP = "until notifyflow setup --check; do echo 'waiting for the setup job'; sleep 5; done"


def partitions() -> int:
    return int(yaml.safe_load(CONFIG.read_text())["data"]["NOTIFYFLOW_PARTITIONS"])


def labels(name: str, **extra: str) -> dict:
    return {"app.kubernetes.io/name": "notifyflow", "app.kubernetes.io/component": "flow",
            "notifyflow/flow": name, **extra}


def env_from() -> list[dict]:
    return [{"configMapRef": {"name": "notifyflow-config"}}, {"secretRef": {"name": "notifyflow-secrets"}}]


def hardened() -> dict:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def probe(path: str, port: int, *, delay: int, period: int, failures: int) -> dict:
    return {"httpGet": {"path": path, "port": port}, "initialDelaySeconds": delay, "periodSeconds": period,
            "failureThreshold": failures, "timeoutSeconds": 5}


def headless_service(name: str, pod_labels: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": pod_labels},
            "spec": {"clusterIP": "None",
                     # The processes must find each other before any of them is ready.
                     "publishNotReadyAddresses": True,
                     "selector": {"notifyflow/flow": pod_labels["notifyflow/flow"]},
                     "ports": [{"name": "cluster", "port": CLUSTER_PORT}, {"name": "metrics", "port": METRICS_PORT}]}}


def cluster_env(name: str, cluster: Cluster) -> list[dict]:
    """bytewax.run's settings; with several processes, -i from the pod's name and -a from the service."""
    env = [{"name": "BYTEWAX_WORKERS_PER_PROCESS", "value": str(cluster.workers)},
           {"name": "BYTEWAX_RECOVERY_DIRECTORY", "value": RECOVERY},
           {"name": "BYTEWAX_SNAPSHOT_INTERVAL", "value": SNAPSHOT_S},
           {"name": "BYTEWAX_RECOVERY_BACKUP_INTERVAL", "value": BACKUP_S}]
    if cluster.processes > 1:
        addresses = ";".join(f"{name}-{i}.{name}:{CLUSTER_PORT}" for i in range(cluster.processes))
        env += [{"name": "BYTEWAX_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "BYTEWAX_STATEFULSET_NAME", "value": name},
                {"name": "BYTEWAX_ADDRESSES", "value": addresses}]
    return env


def stateful_set(name: str, pod_labels: dict, cluster: Cluster, command: list[str], *, env: list[dict],
                 init: list[dict], ports: list[dict], volumes: list[dict], mounts: list[dict]) -> dict:
    resources = {"requests": {"cpu": cluster.cpu, "memory": cluster.memory},
                 "limits": {"cpu": cluster.cpu_limit, "memory": cluster.memory}}
    container = {
        "name": "flow", "image": IMAGE, "command": command, "env": env, "envFrom": env_from(), "ports": ports,
        "resources": resources, "securityContext": hardened(),
        "volumeMounts": [{"name": "recovery", "mountPath": RECOVERY}, {"name": "tmp", "mountPath": "/tmp"}, *mounts],
        # bytewax answers /metrics from start-up on; a process that stops making progress shows in the
        # "not snapshotting" alert instead, which a liveness probe could not tell from a quiet topic.
        "readinessProbe": probe("/metrics", METRICS_PORT, delay=5, period=10, failures=3),
        "livenessProbe": probe("/metrics", METRICS_PORT, delay=30, period=20, failures=6)}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "labels": pod_labels},
        "spec": {
            "serviceName": name, "replicas": cluster.processes,
            # One bytewax cluster: its processes start together and wait for each other.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"notifyflow/flow": pod_labels["notifyflow/flow"]}},
            "template": {
                "metadata": {"labels": pod_labels,
                             "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT),
                                             "prometheus.io/path": "/metrics"}},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                        "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
                    "terminationGracePeriodSeconds": 60,
                    "initContainers": [{**c, "image": IMAGE, "envFrom": env_from(), "securityContext": hardened(),
                                        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                                                      "limits": {"cpu": "1", "memory": "512Mi"}}} for c in init],
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}, *volumes]}},
            "volumeClaimTemplates": [{"metadata": {"name": "recovery"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}}]}}


def bytewax_flow(name: str, target: str, cluster: Cluster, pod_labels: dict, *, env: list[dict] = (),
                 volumes: list[dict] = (), mounts: list[dict] = ()) -> list[dict]:
    if cluster.processes * cluster.workers > partitions():
        raise SystemExit(f"{name}: {cluster.processes} processes x {cluster.workers} workers > "
                         f"NOTIFYFLOW_PARTITIONS={partitions()}")
    recovery_env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "RECOVERY_PARTITIONS", "value": str(cluster.recovery_partitions)},
                    {"name": "BYTEWAX_RECOVERY_DIRECTORY", "value": RECOVERY}]
    init = [{"name": "wait-for-setup", "command": ["sh", "-c", WAIT_FOR_SETUP]},
            {"name": "recovery-store", "command": ["sh", "-c", RECOVERY_INIT], "env": recovery_env,
             "volumeMounts": [{"name": "recovery", "mountPath": RECOVERY}, {"name": "tmp", "mountPath": "/tmp"}]}]
    ports = [{"name": "cluster", "containerPort": CLUSTER_PORT}, {"name": "metrics", "containerPort": METRICS_PORT}]
    return [headless_service(name, pod_labels),
            stateful_set(name, pod_labels, cluster, ["python", "-m", "bytewax.run", target],
                         env=[*cluster_env(name, cluster), *env], init=init, ports=ports, volumes=list(volumes),
                         mounts=list(mounts))]


def delivery_name(channel: str, lane: str) -> str:
    return f"delivery-{channel.replace('_', '-')}-{lane}"


def delivery(channel: str, lane: str) -> list[dict]:
    env, volumes, mounts = [], [], []
    if channel == "push":  # APNs, FCM and Web Push keys are files, mounted only where they are used
        env = [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{PUSH_KEYS}/fcm-service-account.json"},
               {"name": "APNS_PRIVATE_KEY_FILE", "value": f"{PUSH_KEYS}/apns-key.p8"},
               {"name": "VAPID_PRIVATE_KEY_FILE", "value": f"{PUSH_KEYS}/vapid-private-key.pem"}]
        volumes = [{"name": "push-keys", "secret": {"secretName": "notifyflow-push-keys"}}]
        mounts = [{"name": "push-keys", "mountPath": PUSH_KEYS, "readOnly": True}]
    name = delivery_name(channel, lane)
    return bytewax_flow(name, f"flows.delivery:build({channel!r}, {lane!r})", DELIVERY[channel, lane],
                        labels(name, **{"notifyflow/channel": channel, "notifyflow/lane": lane}),
                        env=env, volumes=volumes, mounts=mounts)


def flow_metrics() -> str:
    """ANALYTICS_FLOW_METRICS: every flow process's /metrics, for the queue-lag samples in ClickHouse."""
    flows = [("notifications", NOTIFICATIONS)] + [(delivery_name(c, l), DELIVERY[c, l]) for c, l in DELIVERY]
    return ",".join(f"{name}-{i}=http://{name}-{i}.{name}:{METRICS_PORT}/metrics"
                    for name, cluster in flows for i in range(cluster.processes))


def analytics() -> list[dict]:
    """`notifyflow analytics`: the analytics flow (one process; it creates its own recovery store) and
    the analysts' dashboard and read-only SQL, reachable only inside the cluster."""
    name, pod_labels = "analytics", labels("analytics")
    command = ["notifyflow", "analytics", "--host", "0.0.0.0", "--port", str(DASHBOARD_PORT),
               "--recovery", RECOVERY, "--snapshot", SNAPSHOT_S]
    init = [{"name": "wait-for-setup", "command": ["sh", "-c", WAIT_FOR_SETUP]}]
    ports = [{"name": "dashboard", "containerPort": DASHBOARD_PORT}, {"name": "metrics", "containerPort": METRICS_PORT}]
    workload = stateful_set(name, pod_labels, ANALYTICS, command, env=[
        {"name": "ANALYTICS_FLOW_METRICS", "value": flow_metrics()}], init=init, ports=ports, volumes=[], mounts=[])
    workload["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = probe(
        "/health", DASHBOARD_PORT, delay=5, period=10, failures=3)
    dashboard = {"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "analytics-dashboard", "labels": pod_labels},
                 "spec": {"selector": {"notifyflow/flow": name},
                          "ports": [{"name": "dashboard", "port": DASHBOARD_PORT, "targetPort": DASHBOARD_PORT}]}}
    return [headless_service(name, pod_labels), workload, dashboard]


class Dumper(yaml.SafeDumper):
    """Plain YAML a person reads: scripts as literal blocks, no anchors for repeated labels."""

    def ignore_aliases(self, data) -> bool:
        return True


Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def manifests() -> dict[str, str]:
    """File name -> YAML text, everything deploy/k8s/flows/ holds."""
    header = "# Generated by deploy/generate.py from its cluster layout; edit that and regenerate.\n"
    files = {"notifications.yaml": bytewax_flow("notifications", "flows.notifications:flow", NOTIFICATIONS,
                                                labels("notifications")),
             "analytics.yaml": analytics()}
    files |= {f"{delivery_name(c, l)}.yaml": delivery(c, l) for c in CHANNELS for l in LANES}
    texts = {name: header + yaml.dump_all(docs, Dumper=Dumper, sort_keys=False, width=120)
             for name, docs in files.items()}
    texts["kustomization.yaml"] = header + yaml.dump(
        {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": sorted(files)},
        Dumper=Dumper, sort_keys=False)
    return texts


def main(argv: list[str]) -> int:
    wanted = manifests()
    if "--check" in argv:
        stale = sorted(name for name, text in wanted.items()
                       if not (OUT / name).exists() or (OUT / name).read_text() != text)
        extra = sorted(path.name for path in OUT.glob("*.yaml") if path.name not in wanted)
        if stale or extra:
            print(f"deploy/k8s/flows/ differs from deploy/generate.py: {', '.join(stale + extra)}")
            return 1
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for path in OUT.glob("*.yaml"):
        if path.name not in wanted:
            path.unlink()
    for name, text in wanted.items():
        (OUT / name).write_text(text)
    print(f"wrote {len(wanted)} files to {OUT.relative_to(DEPLOY.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
