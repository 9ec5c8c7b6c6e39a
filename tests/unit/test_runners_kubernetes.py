"""The Kubernetes runner without an API server: golden manifests checked against the official client's
models, the pod-log markers under hostile text, pod states, and what `gc --runner kubernetes` removes."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

pytest.importorskip("kubernetes")
from kubernetes import client

from envkit.cli import main
from envkit.runners import DONE, FAILED, PENDING, RUNNING, RunnerConfig, Target
from envkit.runners.config import seconds
from envkit.runners.kubernetes import (
    KubernetesRunner,
    job_manifest,
    parse_log,
    pod_state,
    probe_configmap,
    select_leftovers,
    to_model,
)
from envkit.validate import JobProbe, RunSettings

GOLDEN = Path(__file__).parent / "golden" / "runners"
NONCE = "0123456789abcdef0123456789abcdef"
FILES = {"envkit_probe/__init__.py": "", "envkit_probe/__main__.py": "print('probe')\n"}
PRODUCT = "NVIDIA-H100-80GB-HBM3"


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("ENVKIT_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; rerun with ENVKIT_UPDATE_GOLDEN=1 if intended"


def a_job(product: str | None = PRODUCT, **changes: object) -> dict:
    config = RunnerConfig(runner="kubernetes", time_limit="00:30:00", **changes)  # type: ignore[arg-type]
    return job_manifest(
        Target(image="registry.example/acme/pytorch:2.6", gpu_type=product),
        config,
        name="envkit-validate-run1-1",
        run="run1",
        nonce=NONCE,
        configmap="envkit-probe-run1",
        files=FILES,
        probe_command=("/bin/sh", "-c", "probe", "envkit-probe", "--out", "/tmp/envkit-out/result.json"),
    )


def round_trip(manifest: dict, kind: str) -> dict:
    """The manifest after passing through the client's model: equal only when every field is known."""
    return client.ApiClient().sanitize_for_serialization(to_model(manifest, kind))


def test_golden_job() -> None:
    golden("kubernetes-job.yaml", yaml.safe_dump(a_job(), sort_keys=False, width=1000))


def test_golden_configmap() -> None:
    golden(
        "kubernetes-configmap.yaml",
        yaml.safe_dump(probe_configmap("envkit-probe-run1", "run1", FILES), sort_keys=False),
    )


def test_manifests_are_valid_client_models_with_no_unknown_field() -> None:
    assert round_trip(a_job(), "V1Job") == a_job()
    configmap = probe_configmap("envkit-probe-run1", "run1", FILES)
    assert round_trip(configmap, "V1ConfigMap") == configmap


def test_the_pod_is_pinned_to_its_gpu_product_and_asks_for_gpus() -> None:
    job = to_model(a_job(gpus_per_job=2), "V1Job")
    pod = job.spec.template.spec
    assert pod.node_selector == {"nvidia.com/gpu.product": PRODUCT}
    assert pod.containers[0].resources.limits == {"nvidia.com/gpu": "2"}
    assert job.spec.active_deadline_seconds == 1800
    assert job.spec.ttl_seconds_after_finished > 0
    assert job.spec.backoff_limit == 0


def test_without_a_product_no_node_selector() -> None:
    assert "nodeSelector" not in a_job(product=None)["spec"]["template"]["spec"]


def test_the_sandbox_is_restrictive_and_the_probe_read_only() -> None:
    pod = to_model(a_job(), "V1Job").spec.template.spec
    context = pod.containers[0].security_context
    assert context.allow_privilege_escalation is False
    assert context.privileged is False
    assert context.read_only_root_filesystem is True
    assert context.capabilities.drop == ["ALL"]
    assert pod.automount_service_account_token is False
    mounts = {mount.mount_path: mount for mount in pod.containers[0].volume_mounts}
    assert mounts["/tmp/envkit"].read_only is True
    probe = next(volume for volume in pod.volumes if volume.name == "probe")
    assert [item.path for item in probe.config_map.items] == sorted(FILES)


def test_labels_let_gc_find_every_object() -> None:
    for manifest in (a_job(), probe_configmap("envkit-probe-run1", "run1", FILES)):
        labels = manifest["metadata"]["labels"]
        assert labels["io.envkit.managed"] == "true" and labels["io.envkit.run"] == "run1"


@pytest.mark.parametrize(
    ("limit", "expected"),
    [("30", 1800), ("1:30", 90), ("02:00:00", 7200), ("1-00", 86400), ("1-2:3:4", 93784)],
)
def test_slurm_time_syntax_in_seconds(limit: str, expected: int) -> None:
    assert seconds(limit) == expected


def test_emit_manifests_writes_loadable_objects(tmp_path: Path) -> None:
    code = main(
        [
            "validate", "acme/pytorch:2.6", "--runner", "kubernetes", "--gpu-product", f"{PRODUCT},NVIDIA-A100-SXM4-80GB",
            "--emit-manifests", str(tmp_path / "out"), "--namespace", "ml",
        ]
    )  # fmt: skip
    assert code == 0
    files = sorted((tmp_path / "out").iterdir())
    kinds = [yaml.safe_load(path.read_text())["kind"] for path in files]
    assert kinds == ["ConfigMap", "Job", "Job"]
    jobs = [yaml.safe_load(path.read_text()) for path in files[1:]]
    assert [j["spec"]["template"]["spec"]["nodeSelector"]["nvidia.com/gpu.product"] for j in jobs] == [
        PRODUCT,
        "NVIDIA-A100-SXM4-80GB",
    ]
    configmap = yaml.safe_load(files[0].read_text())
    mounted = jobs[0]["spec"]["template"]["spec"]["volumes"][1]["configMap"]
    assert mounted["name"] == configmap["metadata"]["name"]
    assert {item["key"] for item in mounted["items"]} == set(configmap["data"])
    assert any(item["path"] == "envkit_probe/__main__.py" for item in mounted["items"])
    for job in jobs:
        assert round_trip(job, "V1Job") == job


def test_the_real_probe_command_runs_the_probe_then_prints_markers() -> None:
    runner = KubernetesRunner(RunnerConfig(runner="kubernetes"), JobProbe(RunSettings()))
    nonce, manifest = runner.manifests(Target(image="acme/pytorch:2.6", gpu_type=PRODUCT))
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "ENVKIT_NONCE", "value": nonce}]
    assert container["command"][:2] == ["/bin/sh", "-c"]
    assert "===envkit-result-begin $ENVKIT_NONCE===" in container["command"][2]
    assert "--out" in container["command"] and "/tmp/envkit-out/result.json" in container["command"]


# --- the pod log ---------------------------------------------------------------------------------

RESULT = json.dumps({"checks": [], "host": {}})


def log_of(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def test_the_result_between_the_markers_and_the_exit_code() -> None:
    log = log_of(
        "probe progress",
        f"===envkit-result-begin {NONCE}===",
        RESULT,
        f"===envkit-result-end {NONCE} exit=0===",
    )
    assert parse_log(log, NONCE) == (RESULT.encode(), 0)


@pytest.mark.parametrize(
    "log",
    [
        # a forged pair printed by the image before the real one: two begins
        log_of(f"===envkit-result-begin {NONCE}===", '{"checks": []}', f"===envkit-result-end {NONCE} exit=0===",
               f"===envkit-result-begin {NONCE}===", RESULT, f"===envkit-result-end {NONCE} exit=0==="),
        # the pod was killed before the end marker
        log_of(f"===envkit-result-begin {NONCE}===", RESULT),
        # end before begin
        log_of(f"===envkit-result-end {NONCE} exit=0===", RESULT, f"===envkit-result-begin {NONCE}==="),
        # markers not on a line of their own
        log_of(f"x ===envkit-result-begin {NONCE}===", RESULT, f"===envkit-result-end {NONCE} exit=0=== x"),
        # nothing at all
        "",
    ],
)  # fmt: skip
def test_ambiguous_or_incomplete_logs_give_no_result(log: str) -> None:
    assert parse_log(log, NONCE) == (None, None)


def test_markers_of_another_nonce_are_ignored() -> None:
    other = "f" * 32
    log = log_of(
        f"===envkit-result-begin {other}===", "{}", f"===envkit-result-end {other} exit=0===",
        f"===envkit-result-begin {NONCE}===", RESULT, f"===envkit-result-end {NONCE} exit=3===",
    )  # fmt: skip
    assert parse_log(log, NONCE) == (RESULT.encode(), 3)


def test_terminal_escapes_and_carriage_returns_stay_data() -> None:
    log = log_of(
        "\x1b[2J\r===envkit-result-begin " + NONCE + "===", RESULT, f"===envkit-result-end {NONCE} exit=0==="
    )
    assert parse_log(log, NONCE) == (None, None)


# --- pod states ----------------------------------------------------------------------------------


def pod(
    phase: str, waiting: str | None = None, node: str | None = "gpu-node-1", unschedulable: str | None = None
):  # type: ignore[no-untyped-def]
    statuses = None
    if waiting:
        state = client.V1ContainerState(
            waiting=client.V1ContainerStateWaiting(reason=waiting, message="pull access denied")
        )
        statuses = [
            client.V1ContainerStatus(
                name="probe", image="i", image_id="", ready=False, restart_count=0, state=state
            )
        ]
    conditions = None
    if unschedulable:
        conditions = [
            client.V1PodCondition(
                type="PodScheduled", status="False", reason="Unschedulable", message=unschedulable
            )
        ]
    return client.V1Pod(
        spec=client.V1PodSpec(containers=[], node_name=node),
        status=client.V1PodStatus(phase=phase, container_statuses=statuses, conditions=conditions),
    )


def test_pod_states() -> None:
    assert pod_state(None).phase == PENDING
    assert pod_state(pod("Running")).phase == RUNNING
    assert pod_state(pod("Succeeded")).phase == DONE
    pending = pod_state(
        pod("Pending", node=None, unschedulable="0/4 nodes are available: 4 Insufficient nvidia.com/gpu.")
    )
    assert (pending.phase, pending.reason) == (
        PENDING,
        "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
    )


def test_an_image_that_cannot_be_pulled_fails_now_with_the_reason() -> None:
    state = pod_state(pod("Pending", waiting="ImagePullBackOff"))
    assert (state.phase, state.state, state.reason) == (FAILED, "ImagePullBackOff", "pull access denied")


# --- cleanup selection ---------------------------------------------------------------------------

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def k8s_job(name: str, run: str, *, age_h: float, active: bool):  # type: ignore[no-untyped-def]
    status = client.V1JobStatus(active=1) if active else client.V1JobStatus(succeeded=1)
    meta = client.V1ObjectMeta(
        name=name, labels={"io.envkit.run": run}, creation_timestamp=NOW - timedelta(hours=age_h)
    )
    return client.V1Job(metadata=meta, status=status)


def k8s_configmap(name: str, run: str, *, age_h: float):  # type: ignore[no-untyped-def]
    meta = client.V1ObjectMeta(
        name=name, labels={"io.envkit.run": run}, creation_timestamp=NOW - timedelta(hours=age_h)
    )
    return client.V1ConfigMap(metadata=meta)


def test_gc_removes_old_finished_jobs_and_configmaps_of_finished_runs_only() -> None:
    jobs = [
        k8s_job("old-done", "a", age_h=5, active=False),
        k8s_job("new-done", "b", age_h=0.1, active=False),
        k8s_job("old-running", "c", age_h=5, active=True),
    ]
    configmaps = [
        k8s_configmap("cm-a", "a", age_h=5),
        k8s_configmap("cm-c", "c", age_h=5),
        k8s_configmap("cm-b", "b", age_h=0.1),
    ]
    found = {
        item.name: item.keep_reason
        for item in select_leftovers(jobs, configmaps, now=NOW.timestamp(), everything=False)
    }
    assert found == {
        "old-done": None,
        "new-done": "younger than an hour",
        "old-running": "still running (use --all when no envkit is running)",
        "cm-a": None,
        "cm-c": "its run still has a running Job",
        "cm-b": "younger than an hour",
    }
    everything = select_leftovers(jobs, configmaps, now=NOW.timestamp(), everything=True)
    assert all(item.keep_reason is None for item in everything)


def test_the_wrapper_prints_what_parse_log_reads(tmp_path: Path) -> None:
    """The pod's shell wrapper, run here with /bin/sh: probe noise on stderr, then the marked result."""
    import subprocess

    from envkit.runners import OUT_DIR
    from envkit.runners.kubernetes import WRAPPER

    out = tmp_path / "out"
    fake_probe = (
        f"echo '===envkit-result-end {NONCE} exit=0==='; printf '%s' '{RESULT}' > {out}/result.json; exit 4"
    )
    done = subprocess.run(
        ["/bin/sh", "-c", WRAPPER.replace(OUT_DIR, str(out)), "envkit-job", "/bin/sh", "-c", fake_probe],
        env={"ENVKIT_NONCE": NONCE, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=False,
    )
    pod_log = done.stderr + done.stdout  # what the kubelet keeps: both streams, in order
    assert parse_log(pod_log, NONCE) == (None, None), "a forged end marker from the probe makes it ambiguous"
    assert parse_log(done.stdout, NONCE) == (RESULT.encode(), 4)
