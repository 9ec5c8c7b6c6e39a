"""The Slurm runner: one batch job per (image × GPU type), through `sbatch` or slurmrestd.

Each job gets its own folder under `job_dir`, which must be on a file system the compute nodes share
with this host (as home and scratch are on Slurm clusters): the batch script, its log, the staged probe
and the report live there until envkit collects them. Inside the job the probe runs in the image
through the container runtime the node has:

- pyxis: `srun --container-image=...` with the probe mounted read-only (enroot image names);
- apptainer: `apptainer exec --nv --containall docker://...`;
- podman: `podman run` with no network, all capabilities dropped and the job's GPUs as CDI devices;
- docker: the node's envkit runs `envkit validate IMAGE` against the node's engine (its sandbox);
- auto: the job picks the first of those the node has, in that order.

Job states come from `squeue --json` (and `scontrol show job` for a job squeue no longer lists); no
accounting database (sacct) is needed.
"""

from __future__ import annotations

import getpass
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envkit import safety
from envkit.errors import ConfigError, EnvironmentFault, UsageError
from envkit.report import Report, load_report
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
    SubmitRefused,
    Target,
)
from envkit.runners.reports import annotate, error_report, failure_summary

SCHEDULER = "slurm"
JOB_NAME = "envkit-validate"
CHECKS_FILE = "checks.json"  # the user's checks, for a node running its own envkit (docker runtime)
JOB_COMMENT = "envkit-validate"  # `envkit`'s jobs are found by this comment (squeue -o %k)
COMMAND_TIMEOUT_S = 60.0
# Job state codes, squeue(1) "JOB STATE CODES": https://slurm.schedmd.com/squeue.html#SECTION_JOB-STATE-CODES
_PHASE = {
    "PENDING": PENDING,
    "CONFIGURING": PENDING,
    "REQUEUED": PENDING,
    "REQUEUE_FED": PENDING,
    "REQUEUE_HOLD": PENDING,
    "RESV_DEL_HOLD": PENDING,
    "RUNNING": RUNNING,
    "COMPLETING": RUNNING,
    "SUSPENDED": RUNNING,
    "STAGE_OUT": RUNNING,
    "SIGNALING": RUNNING,
    "RESIZING": RUNNING,
    "STOPPED": RUNNING,
    # The batch script ended on its own (its exit code may say the probe found failures): read its files.
    "COMPLETED": DONE,
    "FAILED": DONE,
    # The scheduler ended the job: whatever it wrote is incomplete.
    "BOOT_FAIL": FAILED,
    "CANCELLED": FAILED,
    "DEADLINE": FAILED,
    "NODE_FAIL": FAILED,
    "OUT_OF_MEMORY": FAILED,
    "PREEMPTED": FAILED,
    "REVOKED": FAILED,
    "SPECIAL_EXIT": FAILED,
    "TIMEOUT": FAILED,
}
_JOB_ID = re.compile(r"[0-9]{1,12}")
_PATH = re.compile(r"/[A-Za-z0-9_.+/-]{0,1000}")


@dataclass(frozen=True, kw_only=True)
class BatchJob:
    """A rendered batch job: sbatch options (for slurmrestd's JSON too) and the script."""

    options: Mapping[str, str]
    script: str


# --- rendering -------------------------------------------------------------------------------------


def batch_options(target: Target, config: RunnerConfig, folder: Path) -> dict[str, str]:
    """sbatch's long options for this job, in a stable order."""
    options = {
        "job-name": JOB_NAME,
        "comment": JOB_COMMENT,
        "output": str(folder / "job.log"),
        "nodes": "1",
        "ntasks": "1",
        "time": config.time_limit,
        # A job its node died under, or that was preempted, ends (NODE_FAIL, PREEMPTED) and gets an
        # ERROR report, rather than going back to the queue unseen.
        "no-requeue": "",
    }
    if config.gpus_per_job:
        kind = f"gpu:{target.gpu_type}" if target.gpu_type else "gpu"
        options["gres"] = f"{kind}:{config.gpus_per_job}"
    if config.constraint:
        constraint = config.constraint.replace("{gpu_type}", target.gpu_type or "")
        if constraint:
            options["constraint"] = constraint
    if config.partition:
        options["partition"] = config.partition
    if config.account:
        options["account"] = config.account
    return options


def render_job(target: Target, config: RunnerConfig, folder: Path, probe_command: Sequence[str]) -> BatchJob:
    """The batch job that validates `target`, writing its files into `folder` (absolute)."""
    options = batch_options(target, config, folder)
    lines = [
        "#!/bin/bash",
        *(f"#SBATCH --{key}={value}" if value else f"#SBATCH --{key}" for key, value in options.items()),
    ]
    lines += [
        f"# envkit: validate {target.image} on GPU type {target.gpu_type or '(any)'}",
        "set -u",
        f"out={shlex.quote(str(folder))}",
        _JOB_ENV,
        *_runtime_functions(target, config, probe_command),
        _choose_runtime(config.container_runtime),
        'printf \'runtime=%s\\n\' "$runtime" >>"$out/job.env"',
        '"run_$runtime"',
        "code=$?",
        'printf \'%s\\n\' "$code" >"$out/exit-code"',
        'exit "$code"',
    ]
    return BatchJob(options=options, script="\n".join(lines) + "\n")


# What the job records about where it ran; read back by `collect` as plain key=value lines.
_JOB_ENV = r"""{
  printf 'job_id=%s\n' "${SLURM_JOB_ID:-}"
  printf 'node=%s\n' "${SLURMD_NODENAME:-$(hostname)}"
  printf 'job_gpus=%s\n' "${SLURM_JOB_GPUS:-}"
  printf 'gpu_model=%s\n' "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
} >"$out/job.env"
""".rstrip()

_DETECT = r"""if srun --help 2>/dev/null | grep -q -- --container-image; then runtime=pyxis
elif command -v apptainer >/dev/null 2>&1; then runtime=apptainer
elif command -v podman >/dev/null 2>&1; then runtime=podman
elif command -v docker >/dev/null 2>&1; then runtime=docker
else echo "envkit: no container runtime on $(hostname) (pyxis, apptainer, podman, docker)" >&2; exit 96
fi"""


def _choose_runtime(runtime: str) -> str:
    return _DETECT if runtime == "auto" else f"runtime={runtime}"


def _runtime_functions(target: Target, config: RunnerConfig, probe_command: Sequence[str]) -> list[str]:
    chosen: tuple[str, ...] = ("pyxis", "apptainer", "podman", "docker")
    if config.container_runtime != "auto":
        chosen = (config.container_runtime,)
    render = {"pyxis": _pyxis, "apptainer": _apptainer, "podman": _podman, "docker": _docker}
    return [f"run_{name}() {{\n{render[name](target, config, probe_command)}\n}}" for name in chosen]


def _probe_mounts(separator: str) -> tuple[str, str]:
    return f'"$out/probe"{separator}{PROBE_DIR}:ro', f'"$out/result"{separator}{OUT_DIR}'


def _pyxis(target: Target, config: RunnerConfig, probe_command: Sequence[str]) -> str:
    # pyxis (NVIDIA/pyxis) takes enroot image URIs: `registry#repository:tag`.
    mounts = f'"$out/probe:{PROBE_DIR}:ro,$out/result:{OUT_DIR}"'
    return (
        f"  srun --ntasks=1 --container-image={shlex.quote(enroot_uri(target.image))} \\\n"
        f"    --container-mounts={mounts} --no-container-mount-home \\\n"
        f"    {shlex.join(probe_command)}"
    )


def _apptainer(target: Target, config: RunnerConfig, probe_command: Sequence[str]) -> str:
    probe, out = _probe_mounts(":")
    nv = "--nv " if config.gpus_per_job else ""
    return (
        f"  apptainer exec {nv}--containall --no-home --bind {probe} --bind {out} \\\n"
        f"    {shlex.quote('docker://' + target.image)} \\\n"
        f"    {shlex.join(probe_command)}"
    )


def _podman(target: Target, config: RunnerConfig, probe_command: Sequence[str]) -> str:
    probe, out = _probe_mounts(":")
    # The job's own GPUs only (Slurm's allocation), as CDI devices.
    devices = (
        '  local devices=() i gpus="${SLURM_JOB_GPUS:-}"\n'
        '  for i in ${gpus//,/ }; do devices+=(--device "nvidia.com/gpu=$i"); done\n'
    )
    return (
        devices + "  podman run --rm --network=none --cap-drop=all --security-opt=no-new-privileges \\\n"
        f'    "${{devices[@]}}" -v {probe} -v {out} \\\n'
        f"    {shlex.quote(target.image)} \\\n"
        f"    {shlex.join(probe_command)}"
    )


def _docker(target: Target, config: RunnerConfig, probe_command: Sequence[str]) -> str:
    envkit = shlex.join(config.envkit_command or (sys.executable, "-m", "envkit"))
    flags = ["--profile", config.probe.profile]
    for check in config.probe.only:
        flags += ["--only", check]
    if config.probe.timeout_s:
        flags += ["--timeout", f"{config.probe.timeout_s:g}"]
    if config.probe.require_gpu:
        flags.append("--require-gpu")
    return (
        "  # The node's envkit runs the probe in the node's engine, with its own sandbox; the GPUs are\n"
        "  # the job's own (Slurm's allocation), none when the node has no NVIDIA driver.\n"
        "  local gpus=none\n"
        '  if [ -n "${SLURM_JOB_GPUS:-}" ] && command -v nvidia-smi >/dev/null 2>&1; then '
        'gpus="device=$SLURM_JOB_GPUS"; fi\n'
        f"  local checks=()\n"
        f'  if [ -f "$out/{CHECKS_FILE}" ]; then checks=(--checks "$out/{CHECKS_FILE}"); fi\n'
        f"  {envkit} validate {shlex.quote(target.image)} {shlex.join(flags)} \\\n"
        '    ${checks[@]+"${checks[@]}"} --gpus "$gpus" --out "$out/report.json"'
    )


def enroot_uri(image: str) -> str:
    """`ghcr.example/acme/pytorch:2.6` → `ghcr.example#acme/pytorch:2.6` (enroot's registry#image)."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return f"{first}#{rest}"
    return image


# --- states ----------------------------------------------------------------------------------------


def state_from_json(job: Mapping[str, Any]) -> JobState:
    """A JobState from one entry of `squeue --json` or slurmrestd's job answer (22.05 and later shapes)."""
    word = job.get("job_state")
    if isinstance(word, list):  # 23.02+: a list of flags, the base state first
        word = word[0] if word else "UNKNOWN"
    word = str(word or "UNKNOWN")
    reason = job.get("state_reason")
    node = job.get("batch_host") or job.get("nodes") or None
    return JobState(
        phase=_PHASE.get(word, RUNNING),
        state=word,
        reason=str(reason) if reason and reason != "None" else None,
        node=str(node) if node else None,
        exit_code=_exit_code(job.get("exit_code")),
    )


def _exit_code(value: Any) -> int | None:
    """22.05 gives the wait status (768 for exit 3); 23.02+ an object with return_code."""
    if isinstance(value, dict):
        code = value.get("return_code")
        code = code.get("number") if isinstance(code, dict) else code
        return code if isinstance(code, int) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value >> 8 if value & 0x7F == 0 else 128 + (value & 0x7F)
    return None


def state_from_scontrol(text: str) -> JobState | None:
    """A JobState from `scontrol show job -o ID` (JobState=... Reason=... BatchHost=... ExitCode=3:0)."""
    fields = dict(re.findall(r"(\w+)=(\S*)", text))
    word = fields.get("JobState")
    if not word:
        return None
    code, _, signal = fields.get("ExitCode", "").partition(":")
    exit_code = int(code) if code.isdigit() else None
    if signal.isdigit() and int(signal):
        exit_code = 128 + int(signal)
    reason = fields.get("Reason")
    node = fields.get("BatchHost") or fields.get("NodeList")
    return JobState(
        phase=_PHASE.get(word, RUNNING),
        state=word,
        reason=reason if reason and reason != "None" else None,
        node=node if node and node != "(null)" else None,
        exit_code=exit_code,
    )


# --- clients ---------------------------------------------------------------------------------------


class SlurmClient:
    """How envkit talks to Slurm: the command-line tools (this class) or slurmrestd (slurm_rest.py)."""

    def submit(self, job: BatchJob, folder: Path) -> str:
        """Submit `job` (its script also written to folder/job.sh); returns the job id."""
        script = folder / "job.sh"
        script.write_text(job.script, encoding="utf-8")
        done = _command(["sbatch", "--parsable", str(script)], cwd=folder)
        job_id = done.stdout.strip().split(";")[0]
        if done.returncode != 0 or not _JOB_ID.fullmatch(job_id):
            message = _one_line(done.stderr) or f"sbatch exited with {done.returncode}"
            if "Unable to contact slurm controller" in done.stderr:
                raise EnvironmentFault(f"sbatch: {message}", hint="is slurmctld up? (sinfo)")
            raise SubmitRefused(f"sbatch: {message}")
        return job_id

    def check(self) -> None:
        """Raise EnvironmentFault unless slurmctld answers (a missing or broken configuration, a
        controller that is down): then every job would fail, which is not a per-job refusal."""
        done = _command(["scontrol", "ping"])
        if done.returncode != 0 or " is UP" not in done.stdout:
            said = _one_line(done.stderr or done.stdout)[:300]
            raise EnvironmentFault(f"slurmctld does not answer: {said}", hint="check SLURM_CONF and sinfo")

    def states(self, ids: Sequence[str]) -> dict[str, JobState]:
        """States of `ids`; squeue first, then scontrol for jobs squeue no longer lists."""
        done = _command(["squeue", "--json", "--states=all", f"--jobs={','.join(ids)}"])
        found: dict[str, JobState] = {}
        if done.returncode == 0:
            try:
                listed = json.loads(done.stdout).get("jobs") or []
            except (json.JSONDecodeError, AttributeError):
                listed = []
            found = {str(job.get("job_id")): state_from_json(job) for job in listed if isinstance(job, dict)}
        elif "Invalid job id" not in done.stderr:
            raise EnvironmentFault(f"squeue: {_one_line(done.stderr)}", hint="is slurmctld up? (sinfo)")
        for job_id in ids:
            if job_id not in found:
                found[job_id] = self._scontrol(job_id)
        return {job_id: found[job_id] for job_id in ids}

    def _scontrol(self, job_id: str) -> JobState:
        done = _command(["scontrol", "show", "job", "-o", job_id])
        state = state_from_scontrol(done.stdout) if done.returncode == 0 else None
        # Gone from slurmctld's memory (older than MinJobAge): the job's own files tell how it ended.
        return state or JobState(phase=DONE, state="GONE", reason="slurmctld no longer knows the job")

    def cancel(self, ids: Sequence[str]) -> list[str]:
        """scancel every id; returns those scancel accepted."""
        if not ids:
            return []
        done = _command(["scancel", *ids])
        refused = set(re.findall(r"[Jj]ob(?:Id)?[ =]?([0-9]+)", done.stderr))
        return [job_id for job_id in ids if job_id not in refused]


def _command(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        raise EnvironmentFault(
            f"{argv[0]} not found: this host has no Slurm client tools",
            hint="run envkit on a login node, or give --slurm-rest URL",
        ) from None
    except subprocess.TimeoutExpired:
        raise EnvironmentFault(f"{argv[0]} did not answer within {COMMAND_TIMEOUT_S:.0f} s") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


# --- the runner ------------------------------------------------------------------------------------


class SlurmRunner(Runner):
    """Submits batch jobs through `client`; each job's files live in its own folder under job_dir."""

    name = SCHEDULER

    def __init__(self, config: RunnerConfig, probe: ProbeKit, client: SlurmClient) -> None:
        self.config = config
        self.probe = probe
        self.client = client
        self.started: dict[str, float] = {}

    def submit(self, target: Target) -> Job:
        safety.image_ref(target.image)
        if not self.started:
            self.client.check()
        folder = self._new_folder(target)
        needs_probe = self.config.container_runtime != "docker"
        if needs_probe:
            self.probe.stage(folder / "probe")
            # The image's own user (a sub-uid under rootless runtimes) writes its result here; only
            # this mount reaches it, the job folder itself stays private to the submitting user.
            (folder / "result").mkdir()
            (folder / "result").chmod(0o777)
        # A node whose runtime is docker runs its own `envkit validate`: it reads the checks from here.
        self.probe.write_checks(folder / CHECKS_FILE)
        result = f"{OUT_DIR}/result.json"
        job = render_job(target, self.config, folder, self.probe.command(result) if needs_probe else ())
        try:
            job_id = self.client.submit(job, folder)
        except SubmitRefused:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.started[job_id] = time.monotonic()
        return Job(target=target, id=job_id, folder=folder)

    def _new_folder(self, target: Target) -> Path:
        root = self.config.job_dir.resolve()
        if not _PATH.fullmatch(str(root)):
            raise UsageError(
                f"--job-dir {str(root)!r}: a batch script cannot name it (use letters, digits, _ . + - /)"
            )
        root.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{target.image}@{target.gpu_type or 'any'}")[-80:]
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for attempt in range(1000):
            folder = root / f"{stamp}-{attempt:03d}-{slug}"
            try:
                folder.mkdir(mode=0o700)  # on a shared file system: nobody else reads or forges reports
            except FileExistsError:
                continue
            return folder
        raise EnvironmentFault(f"cannot make a job folder in {root}")

    def poll(self, jobs: Sequence[Job]) -> dict[str, JobState]:
        return self.client.states([job.id for job in jobs])

    def cancel(self, jobs: Sequence[Job]) -> list[str]:
        cancelled = self.client.cancel([job.id for job in jobs])
        for job in jobs:
            if job.id in cancelled and job.folder is not None:
                shutil.rmtree(job.folder, ignore_errors=True)
        return cancelled

    def collect(self, job: Job, state: JobState) -> Report:
        folder = job.folder
        assert folder is not None
        try:
            return self._report(job, state, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _report(self, job: Job, state: JobState, folder: Path) -> Report:
        recorded = _read_env(folder / "job.env")
        state = _with_recorded(state, recorded, folder / "exit-code")
        model = recorded.get("gpu_model") or None
        logs = _read_text(folder / "job.log")
        duration = time.monotonic() - self.started.get(job.id, time.monotonic())
        if state.phase == DONE:
            report = self._probe_report(job, state, folder, logs)
            if report is not None:
                return annotate(report, SCHEDULER, job, state, model)
        summary, hint = failure_summary(SCHEDULER, job, state, logs)
        return error_report(
            job.target,
            self.config.probe,
            scheduler=SCHEDULER,
            summary=summary,
            hint=hint,
            job=job,
            state=state,
            logs=logs,
            duration_s=duration,
        )

    def _probe_report(self, job: Job, state: JobState, folder: Path, logs: str) -> Report | None:
        if (folder / "report.json").is_file():
            try:
                return load_report(folder / "report.json")
            except ConfigError:
                return None
        result = folder / "result" / "result.json"
        if result.is_file() and not result.is_symlink():
            raw = result.read_bytes()
            return self.probe.report(job.target, raw, exit_code=state.exit_code, logs=logs)
        return None


def _read_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in _read_text(path).splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("job_id", "node", "job_gpus", "gpu_model", "runtime"):
            values[key] = value.strip()[:200]
    return values


def _with_recorded(state: JobState, recorded: Mapping[str, str], exit_file: Path) -> JobState:
    """Fill what the scheduler no longer says (node, exit code) from what the job wrote itself."""
    code = _read_text(exit_file).strip()
    exit_code = state.exit_code
    if exit_code is None and code.isdigit():
        exit_code = int(code)
    node = state.node or recorded.get("node") or None
    if state.state == "GONE" and not code.isdigit():
        return JobState(phase=FAILED, state="GONE", reason=state.reason, node=node, exit_code=exit_code)
    return JobState(phase=state.phase, state=state.state, reason=state.reason, node=node, exit_code=exit_code)


def _read_text(path: Path, limit: int = 256 * 1024) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - limit))
            return handle.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


# --- leftovers (envkit gc --runner slurm) ---------------------------------------------------------

STALE_AFTER_S = 3600.0
_FOLDER_NAME = re.compile(r"[0-9]{8}T[0-9]{6}-[0-9]{3}-[A-Za-z0-9_.@-]{1,80}")


@dataclass(frozen=True, kw_only=True)
class Leftover:
    """A queued or running envkit job of this user, or a job folder no job uses; goes when keep_reason
    is None."""

    kind: str  # job | folder
    ref: str  # job id, or folder path
    folder: Path | None
    detail: str
    keep_reason: str | None = None


def find_leftovers(job_dir: Path, *, now: float, everything: bool) -> list[Leftover]:
    """envkit's active jobs of this user (squeue) and the job folders under `job_dir`, each with the
    reason it stays: younger than an hour (a running envkit may own it) unless `everything`."""
    done = _command(
        ["squeue", "-h", "-t", "PD,R,CG,S,CF", "-u", _user(), "-n", JOB_NAME, "-o", "%i|%V|%T|%Z"]
    )
    if done.returncode != 0:
        raise EnvironmentFault(f"squeue: {_one_line(done.stderr)}", hint="is slurmctld up? (sinfo)")
    found: list[Leftover] = []
    used: set[Path] = set()
    for line in done.stdout.splitlines():
        job_id, submitted, state, workdir = [*line.split("|"), "", "", ""][:4]
        folder = Path(workdir) if _FOLDER_NAME.fullmatch(Path(workdir).name) else None
        used |= {folder} if folder else set()
        age = now - _epoch(submitted)
        keep = None if everything or age >= STALE_AFTER_S else "submitted less than an hour ago"
        found.append(
            Leftover(
                kind="job", ref=job_id, folder=folder, detail=f"{state} since {submitted}", keep_reason=keep
            )
        )
    root = job_dir.resolve()
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not folder.is_dir() or not _FOLDER_NAME.fullmatch(folder.name) or folder in used:
            continue
        keep = None if everything or now - folder.stat().st_mtime >= STALE_AFTER_S else "younger than an hour"
        found.append(
            Leftover(kind="folder", ref=str(folder), folder=folder, detail="no job", keep_reason=keep)
        )
    return found


def remove_leftover(item: Leftover) -> str | None:
    """scancel a job (and remove its folder) or remove a folder; None when done, else why not."""
    if item.kind == "job":
        done = _command(["scancel", item.ref])
        if done.returncode != 0:
            return _one_line(done.stderr) or f"scancel exited with {done.returncode}"
    if item.folder is not None:
        shutil.rmtree(item.folder, ignore_errors=True)
    return None


def _user() -> str:
    return getpass.getuser()


def _epoch(stamp: str) -> float:
    try:
        return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0.0


def make_runner(config: RunnerConfig, probe: ProbeKit) -> SlurmRunner:
    """The factory's entry: sbatch and friends, or slurmrestd when config.slurm_rest names it."""
    client: SlurmClient
    if config.slurm_rest:
        from envkit.runners.slurm_rest import RestClient

        client = RestClient(config.slurm_rest)
    else:
        client = SlurmClient()
    return SlurmRunner(config, probe, client)


__all__ = [
    "BatchJob",
    "Leftover",
    "SlurmClient",
    "SlurmRunner",
    "batch_options",
    "enroot_uri",
    "find_leftovers",
    "make_runner",
    "remove_leftover",
    "render_job",
    "state_from_json",
    "state_from_scontrol",
]
