"""The Kubernetes runner: one Job per (image × GPU product) through the official client.

Each Job's pod is pinned to a GPU product by the `nvidia.com/gpu.product` node label (set by NVIDIA's
GPU feature discovery), asks for `nvidia.com/gpu` in its limits, runs with a restrictive security
context, and reads the probe from a ConfigMap mounted read-only. The probe's result comes back in the
pod's log between two marker lines carrying a per-job random nonce; anything ambiguous there (a second
marker, a missing end) is an ERROR report, never a guess. Every object carries envkit's labels, so
`envkit gc --runner kubernetes` finds what a killed run left; Jobs also expire on their own
(`ttlSecondsAfterFinished`) and cannot run past `activeDeadlineSeconds`.

Untested against a live API server (none can run where envkit is developed): the manifests are
checked against the client's models and the log parsing and cleanup selection by unit tests.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import yaml

from envkit import safety
from envkit.errors import EnvironmentFault, UsageError
from envkit.labels import MANAGED, ROLE, RUN
from envkit.report import Report
from envkit.runners import (
    DONE,
    FAILED,
    OUT_DIR,
    PENDING,
    PROBE_DIR,
    RUNNING,
    Job,
    JobState,
    ProbeKit,
    Runner,
    RunnerConfig,
    Target,
)
from envkit.runners.config import seconds
from envkit.runners.reports import annotate, error_report, failure_summary

SCHEDULER = "kubernetes"
PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"
SELECTOR = f"{MANAGED}=true,{ROLE}=validate"
TTL_AFTER_FINISHED_S = 3600
# Waiting reasons after which a pod will not start by itself (kubelet's container waiting reasons).
NEVER_STARTS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
_MARKER = re.compile(r"===envkit-result-(begin|end) ([0-9a-f]{32})(?: exit=([0-9]{1,3}))?===")

# The pod runs the probe (stdout and stderr to the log), then prints its result between the markers.
WRAPPER = f"""mkdir -p {OUT_DIR} || exit 99
"$@" >&2
code=$?
echo "===envkit-result-begin $ENVKIT_NONCE==="
cat {OUT_DIR}/result.json 2>/dev/null
echo
echo "===envkit-result-end $ENVKIT_NONCE exit=$code==="
"""


# --- manifests (plain data, checked against the client's models) ---------------------------------


def probe_configmap(name: str, run: str, files: Mapping[str, str]) -> dict[str, Any]:
    """The ConfigMap holding the probe's files; keys f000, f001, ... map to paths in `probe_items`."""
    data = {f"f{i:03d}": files[path] for i, path in enumerate(sorted(files))}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": _labels(run)},
        "data": data,
    }


def probe_items(files: Iterable[str]) -> list[dict[str, Any]]:
    """ConfigMap volume items that lay the flat keys out as the probe package's tree."""
    return [{"key": f"f{i:03d}", "path": path, "mode": 0o444} for i, path in enumerate(sorted(files))]


def job_manifest(
    target: Target,
    config: RunnerConfig,
    *,
    name: str,
    run: str,
    nonce: str,
    configmap: str,
    files: Iterable[str],
    probe_command: Sequence[str],
) -> dict[str, Any]:
    """The Job validating `target`: pinned to its GPU product, sandboxed, bounded in time."""
    labels = _labels(run)
    resources: dict[str, Any] = {}
    if config.gpus_per_job:
        resources = {"limits": {GPU_RESOURCE: str(config.gpus_per_job)}}  # a Quantity: a string
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "probe",
                "image": target.image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/sh", "-c", WRAPPER, "envkit-job", *probe_command],
                "env": [{"name": "ENVKIT_NONCE", "value": nonce}],
                "resources": resources,
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "privileged": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "probe", "mountPath": PROBE_DIR, "readOnly": True},
                    {"name": "shm", "mountPath": "/dev/shm"},
                ],
            }
        ],
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            {"name": "probe", "configMap": {"name": configmap, "items": probe_items(files)}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
        ],
    }
    if target.gpu_type:
        pod_spec["nodeSelector"] = {PRODUCT_LABEL: target.gpu_type}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels | _target_labels(target)},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": seconds(config.time_limit),
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED_S,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def _labels(run: str) -> dict[str, str]:
    return {MANAGED: "true", ROLE: "validate", RUN: run}


def _target_labels(target: Target) -> dict[str, str]:
    return {PRODUCT_LABEL: target.gpu_type} if target.gpu_type else {}


def to_model(manifest: Mapping[str, Any], kind: str) -> Any:
    """`manifest` as the client's model (V1Job, V1ConfigMap); fields the model lacks are dropped."""
    from kubernetes import client

    return client.ApiClient().deserialize(json.dumps(manifest), kind, None)


def stage_files(probe: ProbeKit) -> dict[str, str]:
    """The probe package's files, by path relative to PROBE_DIR."""
    with TemporaryDirectory(prefix="envkit-") as tmp:
        folder = Path(tmp) / "probe"
        probe.stage(folder)
        return {
            str(path.relative_to(folder)): path.read_text(encoding="utf-8")
            for path in sorted(folder.rglob("*"))
            if path.is_file() and path.suffix in (".py", ".json")
        }


# --- the pod log ---------------------------------------------------------------------------------


def parse_log(log: str, nonce: str) -> tuple[bytes | None, int | None]:
    """(result bytes, exit code) between this job's two markers; (None, None) unless exactly one
    begin marker is followed by exactly one end marker of this nonce, each on a line of its own."""
    begins: list[tuple[int, str | None]] = []
    ends: list[tuple[int, str | None]] = []
    lines = log.split("\n")  # only newlines end a line: a \r or other separator is data
    for index, line in enumerate(lines):
        match = _MARKER.fullmatch(line)
        if match and match[2] == nonce:
            (begins if match[1] == "begin" else ends).append((index, match[3]))
    if len(begins) != 1 or len(ends) != 1 or ends[0][0] <= begins[0][0] or ends[0][1] is None:
        return None, None
    body = "\n".join(lines[begins[0][0] + 1 : ends[0][0]]).strip()
    return (body.encode("utf-8") or None), int(ends[0][1])


# --- cleanup selection (envkit gc --runner kubernetes) -------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Leftover:
    """A Job or ConfigMap envkit left in the cluster; `keep_reason` None means it goes."""

    kind: str  # job | configmap
    name: str
    detail: str
    keep_reason: str | None = None


def select_leftovers(
    jobs: Sequence[Any], configmaps: Sequence[Any], *, now: float, everything: bool
) -> list[Leftover]:
    """What gc removes: finished Jobs and ConfigMaps of runs without an active Job, when older than an
    hour; with `everything`, all of envkit's objects (no envkit may be running)."""
    active_runs = {_label(job, RUN) for job in jobs if _active(job)}
    found = []
    for job in jobs:
        age = now - _created(job)
        keep = None
        if not everything and _active(job):
            keep = "still running (use --all when no envkit is running)"
        elif not everything and age < 3600:
            keep = "younger than an hour"
        found.append(
            Leftover(kind="job", name=job.metadata.name, detail=f"run {_label(job, RUN)}", keep_reason=keep)
        )
    for configmap in configmaps:
        keep = None
        if not everything and _label(configmap, RUN) in active_runs:
            keep = "its run still has a running Job"
        elif not everything and now - _created(configmap) < 3600:
            keep = "younger than an hour"
        name = configmap.metadata.name
        found.append(
            Leftover(kind="configmap", name=name, detail=f"run {_label(configmap, RUN)}", keep_reason=keep)
        )
    return found


def _label(obj: Any, key: str) -> str:
    return str((obj.metadata.labels or {}).get(key, "?"))


def _active(job: Any) -> bool:
    status = job.status
    return bool(status and (status.active or not (status.succeeded or status.failed)))


def _created(obj: Any) -> float:
    stamp = obj.metadata.creation_timestamp
    return stamp.timestamp() if isinstance(stamp, datetime) else 0.0


# --- the runner ----------------------------------------------------------------------------------


class KubernetesRunner(Runner):
    """Creates Jobs in `config.namespace` through `core` (CoreV1Api) and `batch` (BatchV1Api)."""

    name = SCHEDULER

    def __init__(self, config: RunnerConfig, probe: ProbeKit, core: Any = None, batch: Any = None) -> None:
        self.config = config
        self.probe = probe
        self.core = core
        self.batch = batch
        self.run = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(3)
        self.configmap = f"envkit-probe-{self.run}"
        self.files: dict[str, str] | None = None
        self.nonces: dict[str, str] = {}
        self.count = 0

    def manifests(self, target: Target) -> tuple[str, dict[str, Any]]:
        """(nonce, Job manifest) for the next job of this run."""
        safety.image_ref(target.image)
        if self.files is None:
            self.files = stage_files(self.probe)
        self.count += 1
        nonce = secrets.token_hex(16)
        name = f"envkit-validate-{self.run}-{self.count}"
        manifest = job_manifest(
            target,
            self.config,
            name=name,
            run=self.run,
            nonce=nonce,
            configmap=self.configmap,
            files=self.files,
            probe_command=self.probe.command(f"{OUT_DIR}/result.json"),
        )
        return nonce, manifest

    def emit_manifests(self, targets: Sequence[Target], folder: Path) -> list[Path]:
        """Write the ConfigMap and one Job per target as YAML into `folder`; submit nothing."""
        folder.mkdir(parents=True, exist_ok=True)
        jobs = [self.manifests(target)[1] for target in targets]
        assert self.files is not None
        written = []
        objects = [
            ("configmap", probe_configmap(self.configmap, self.run, self.files)),
            *(("job", j) for j in jobs),
        ]
        for index, (kind, manifest) in enumerate(objects):
            path = folder / f"{index:03d}-{kind}-{manifest['metadata']['name']}.yaml"
            path.write_text(yaml.safe_dump(manifest, sort_keys=False, width=1000), encoding="utf-8")
            written.append(path)
        return written

    def submit(self, target: Target) -> Job:
        nonce, manifest = self.manifests(target)
        if self.count == 1:
            assert self.files is not None
            body = probe_configmap(self.configmap, self.run, self.files)
            self._call(
                "creating the probe ConfigMap", self.core.create_namespaced_config_map, body, "V1ConfigMap"
            )
        self._call("creating a Job", self.batch.create_namespaced_job, manifest, "V1Job")
        job = Job(target=target, id=manifest["metadata"]["name"])
        self.nonces[job.id] = nonce
        return job

    def _call(self, what: str, method: Any, manifest: dict[str, Any], kind: str) -> Any:
        try:
            return method(namespace=self.config.namespace, body=to_model(manifest, kind))
        except Exception as error:  # the client's ApiException and urllib3's connection errors
            raise EnvironmentFault(f"kubernetes: {what}: {_reason(error)}") from None

    def poll(self, jobs: Sequence[Job]) -> dict[str, JobState]:
        return {job.id: self._state(job.id) for job in jobs}

    def _state(self, name: str) -> JobState:
        try:
            status = self.batch.read_namespaced_job_status(name=name, namespace=self.config.namespace).status
            pods = self.core.list_namespaced_pod(
                namespace=self.config.namespace, label_selector=f"job-name={name}"
            )
        except Exception as error:
            raise EnvironmentFault(f"kubernetes: reading Job {name}: {_reason(error)}") from None
        pod = pods.items[0] if pods.items else None
        node = pod.spec.node_name if pod and pod.spec else None
        for condition in (status and status.conditions) or []:
            if condition.status == "True" and condition.type in ("Failed", "Complete"):
                phase = FAILED if condition.type == "Failed" else DONE
                return JobState(
                    phase=phase, state=condition.reason or condition.type, reason=condition.message, node=node
                )
        return pod_state(pod)

    def cancel(self, jobs: Sequence[Job]) -> list[str]:
        return [job.id for job in jobs if self._delete_job(job.id)]

    def _delete_job(self, name: str) -> bool:
        try:
            self.batch.delete_namespaced_job(
                name=name, namespace=self.config.namespace, propagation_policy="Background"
            )
            return True
        except Exception:
            return False

    def collect(self, job: Job, state: JobState) -> Report:
        log = self._log(job.id) if state.phase == DONE or state.state == "DeadlineExceeded" else ""
        raw, exit_code = parse_log(log, self.nonces.get(job.id, ""))
        self._delete_job(job.id)
        state = JobState(
            phase=state.phase, state=state.state, reason=state.reason, node=state.node, exit_code=exit_code
        )
        if state.phase == DONE and raw is not None:
            report = self.probe.report(job.target, raw, exit_code=exit_code, logs=log)
            return annotate(report, SCHEDULER, job, state, None)
        summary, hint = failure_summary(SCHEDULER, job, state, log)
        if state.phase == DONE:
            summary += " (no unambiguous result between the markers in the pod's log)"
        return error_report(
            job.target,
            self.config.probe,
            scheduler=SCHEDULER,
            summary=summary,
            hint=hint,
            job=job,
            state=state,
            logs=log,
        )

    def _log(self, name: str) -> str:
        try:
            pods = self.core.list_namespaced_pod(
                namespace=self.config.namespace, label_selector=f"job-name={name}"
            )
            if not pods.items:
                return ""
            pod = pods.items[0].metadata.name
            return str(
                self.core.read_namespaced_pod_log(
                    name=pod, namespace=self.config.namespace, container="probe"
                )
            )
        except Exception:
            return ""

    def close(self) -> None:
        if self.count and self.core is not None:
            # When this fails, gc --runner kubernetes finds the ConfigMap by its labels.
            with contextlib.suppress(Exception):
                self.core.delete_namespaced_config_map(name=self.configmap, namespace=self.config.namespace)


def pod_state(pod: Any) -> JobState:
    """The state of a Job whose pod is `pod` (None: not created yet)."""
    if pod is None or pod.status is None:
        return JobState(phase=PENDING, state="Pending", reason="no pod yet")
    node = pod.spec.node_name if pod.spec else None
    for container in pod.status.container_statuses or []:
        waiting = container.state.waiting if container.state else None
        if waiting and waiting.reason in NEVER_STARTS:
            return JobState(phase=FAILED, state=waiting.reason, reason=waiting.message, node=node)
    phase = pod.status.phase or "Pending"
    if phase == "Pending":
        reasons = [c.message or c.reason for c in pod.status.conditions or [] if c.status == "False"]
        return JobState(phase=PENDING, state="Pending", reason=reasons[0] if reasons else None, node=node)
    if phase == "Running":
        return JobState(phase=RUNNING, state="Running", node=node)
    return JobState(phase=DONE, state=phase, node=node)


def _reason(error: BaseException) -> str:
    status, reason = getattr(error, "status", None), getattr(error, "reason", None)
    if status or reason:
        return f"{status} {reason}".strip()
    return " ".join(str(error).split())[:300]


def connect() -> tuple[Any, Any]:
    """(CoreV1Api, BatchV1Api) from the kubeconfig, or the pod's service account inside a cluster."""
    try:
        from kubernetes import client, config
    except ImportError:
        raise UsageError(
            "--runner kubernetes needs the Kubernetes client", hint="pip install 'envkit-gpu[kubernetes]'"
        ) from None
    try:
        config.load_kube_config()
    except Exception:
        try:
            config.load_incluster_config()
        except Exception as error:
            raise EnvironmentFault(
                f"kubernetes: no kubeconfig and not in a cluster: {_reason(error)}"
            ) from None
    return client.CoreV1Api(), client.BatchV1Api()


def make_runner(config: RunnerConfig, probe: ProbeKit) -> KubernetesRunner:
    """The factory's entry; connects lazily (not for --emit-manifests)."""
    return _LazyRunner(config, probe)


class _LazyRunner(KubernetesRunner):
    """Connects on the first submit, so --emit-manifests works without a cluster."""

    def submit(self, target: Target) -> Job:
        if self.core is None:
            self.core, self.batch = connect()
        return super().submit(target)


def list_leftovers(namespace: str, *, everything: bool) -> tuple[Any, Any, list[Leftover]]:
    """(core, batch, leftovers) of envkit's Jobs and ConfigMaps in `namespace`."""
    core, batch = connect()
    try:
        jobs = batch.list_namespaced_job(namespace=namespace, label_selector=SELECTOR).items
        configmaps = core.list_namespaced_config_map(namespace=namespace, label_selector=SELECTOR).items
    except Exception as error:
        raise EnvironmentFault(f"kubernetes: listing envkit's objects: {_reason(error)}") from None
    return core, batch, select_leftovers(jobs, configmaps, now=time.time(), everything=everything)


def remove_leftover(core: Any, batch: Any, namespace: str, item: Leftover) -> str | None:
    """Delete one leftover; None when done, else the reason it could not be."""
    try:
        if item.kind == "job":
            batch.delete_namespaced_job(name=item.name, namespace=namespace, propagation_policy="Background")
        else:
            core.delete_namespaced_config_map(name=item.name, namespace=namespace)
    except Exception as error:
        return _reason(error)
    return None


__all__ = [
    "KubernetesRunner",
    "Leftover",
    "job_manifest",
    "list_leftovers",
    "make_runner",
    "parse_log",
    "pod_state",
    "probe_configmap",
    "remove_leftover",
    "seconds",
    "select_leftovers",
    "to_model",
]
