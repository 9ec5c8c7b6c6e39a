"""`envkit validate IMAGE...` (or `--matrix M`, or `--local`): run the probe and write reports."""

from __future__ import annotations

import argparse
import difflib
import re
import signal
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from envkit import scratch
from envkit.commands._common import checked_plan
from envkit.commands._registry import add_registry_arguments, registry_settings, repository_under
from envkit.engine import get_engine, parse_gpus
from envkit.errors import ConfigError, UsageError
from envkit.matrix import load_matrix
from envkit.policy import check_id_hint, known_check_ids
from envkit.registry import get_registry
from envkit.report import Report, clean_text, dump_report
from envkit.runners import (
    CONTAINER_RUNTIMES,
    RUNNERS,
    Job,
    JobState,
    ProbeSettings,
    Runner,
    Target,
    get_runner,
)
from envkit.runners.config import resolve
from envkit.runners.watch import Progress, run_jobs
from envkit.ui import console
from envkit.userchecks import PREFIX as USER_PREFIX
from envkit.userchecks import UserChecks, load_checks
from envkit.validate import (
    DIGEST_REF,
    JobProbe,
    RunSettings,
    failed,
    host_has_gpu,
    validate_image,
    validate_local,
)
from envkit.views import print_reports
from envkit.views.github import commands_fenced

_SIZE = re.compile(r"(\d+(?:\.\d+)?)([kmgt]?)i?b?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "validate",
        help="run the validation suite inside images (or on this host)",
        description="Run envkit's probe inside each IMAGE (GPUs requested when the host "
        "has them) and write a versioned JSON report per image. Exit 0 when nothing "
        "failed, 1 when a check failed or errored, 3 when the engine could not run it.",
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image references (tags or ids)")
    parser.add_argument("--matrix", type=Path, metavar="MATRIX", help="validate every cell image of MATRIX")
    parser.add_argument("--local", action="store_true", help="run the probe on this host, without Docker")
    parser.add_argument(
        "--python", metavar="PATH", help="with --local: the interpreter to probe (default: envkit's)"
    )
    parser.add_argument(
        "--profile",
        choices=("quick", "full"),
        default="quick",
        help="quick: CPU-sized, under a minute; full: GPU-sized (1B model)",
    )
    parser.add_argument(
        "--gpus",
        default="auto",
        metavar="SPEC",
        help="auto (all when this host has GPUs), none, all, N or device=0,1",
    )
    parser.add_argument(
        "--require-gpu", action="store_true", help="a GPU check skipped for lack of a GPU fails"
    )
    parser.add_argument("--memory", default="8g", metavar="SIZE", help="container memory limit (default 8g)")
    parser.add_argument(
        "--shm-size", default="1g", metavar="SIZE", help="container /dev/shm size (default 1g)"
    )
    parser.add_argument("--pids", type=int, default=4096, metavar="N", help="container pids limit")
    parser.add_argument(
        "--cpus", type=float, metavar="N", help="container CPU quota in cores, as docker run --cpus"
    )
    parser.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="whole-probe timeout (default by profile)"
    )
    parser.add_argument("--user", metavar="USER", help="run as this user (default: the image's own user)")
    parser.add_argument(
        "--checks",
        type=Path,
        metavar="FILE",
        help="also run the user.* checks declared in FILE (default with --matrix: its `checks:`)",
    )
    parser.add_argument("--only", action="append", default=[], metavar="CHECK", help="run only this check id")
    parser.add_argument("-o", "--out", type=Path, metavar="FILE", help="report file (one image, or --local)")
    parser.add_argument(
        "--out-dir", type=Path, metavar="DIR", help="one report per image (default .envkit/reports)"
    )
    parser.add_argument(
        "--registry",
        metavar="R",
        help="with --matrix: validate each cell by digest from registry R (host[:port][/prefix]), "
        "the digest its cell tag names there (as `envkit build --push R` left it)",
    )
    add_registry_arguments(parser, ca_alias=True)
    _register_runner_flags(parser)
    parser.set_defaults(func=run_terminable)


def run_terminable(args: argparse.Namespace) -> int:
    """`run`, with SIGTERM unwinding like Ctrl-C: a scheduler's scancel or time limit, a CI cancel or
    `docker stop` still removes the probe container (or cancels the submitted jobs)."""
    if threading.current_thread() is not threading.main_thread():
        return run(args)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _register_runner_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "cluster runners",
        "With --runner slurm or kubernetes, the scheduler runs one job per image and GPU type and "
        "envkit collects one report each (see README, Running on a cluster).",
    )
    group.add_argument(
        "--runner", choices=("local", *RUNNERS), default="local", help="where the probe runs (default local)"
    )
    group.add_argument("--gpu-type", dest="gpu_types", metavar="TYPE[,TYPE]", help="Slurm GRES types")
    group.add_argument(
        "--gpu-product", dest="gpu_products", metavar="PRODUCT[,…]", help="Kubernetes nvidia.com/gpu.product"
    )
    group.add_argument("--gpus-per-job", type=int, metavar="N", help="GPUs per job (default 1; 0: none)")
    group.add_argument("--partition", metavar="NAME", help="Slurm partition")
    group.add_argument("--account", metavar="NAME", help="Slurm account")
    group.add_argument("--time", metavar="LIMIT", help="job time limit, Slurm syntax (default 01:00:00)")
    group.add_argument("--constraint", metavar="EXPR", help="Slurm --constraint; {gpu_type} is replaced")
    group.add_argument(
        "--container-runtime", choices=CONTAINER_RUNTIMES, help="how a Slurm job runs the image"
    )
    group.add_argument(
        "--slurm-rest", metavar="URL", help="submit through slurmrestd at URL instead of sbatch"
    )
    group.add_argument("--job-dir", metavar="DIR", help="job folders, shared with the nodes")
    group.add_argument("--namespace", metavar="NAME", help="Kubernetes namespace (default default)")
    group.add_argument("--max-wait", type=float, metavar="SECONDS", help="cancel jobs unfinished by then")
    group.add_argument(
        "--node-envkit", dest="envkit_command", metavar="CMD", help="how nodes run envkit (docker runtime)"
    )
    group.add_argument("--runner-config", type=Path, metavar="FILE", help="YAML with a runner: section")
    group.add_argument(
        "--emit-manifests", type=Path, metavar="DIR", help="kubernetes: write the objects, submit nothing"
    )


def registry_targets(matrix: Path, root: str, args: argparse.Namespace) -> list[str]:
    """`host/repo@sha256:...` for every cell of `matrix` whose cell tag registry `root` holds; the tag
    ref for a cell it lacks (its pull then fails, naming it)."""
    the_plan = checked_plan(matrix)
    host, repository = repository_under(root, the_plan.matrix.image.repository, "--registry")
    registry = get_registry(host, registry_settings(args))
    refs = []
    for cell in the_plan.cells:
        found = registry.head_manifest(repository, cell.tag)
        refs.append(f"{host}/{repository}@{found.digest}" if found else f"{host}/{repository}:{cell.tag}")
    return refs


def run(args: argparse.Namespace) -> int:
    out = console()
    targets = list(args.images)
    matrix_checks = None
    if args.registry and not args.matrix:
        raise UsageError("--registry goes with --matrix", hint="or name IMAGE as HOST/REPO@sha256:...")
    if args.matrix and args.registry:
        targets += registry_targets(args.matrix, args.registry, args)
        matrix_checks = load_matrix(args.matrix).checks
    elif args.matrix:
        with out.status("resolving the matrix…"):
            the_plan = checked_plan(args.matrix)
        targets += [cell.image for cell in the_plan.cells]
        matrix_checks = the_plan.matrix.checks
    if args.runner != "local":
        user_checks = load_checks(args.checks) if args.checks else matrix_checks
        _check_user_only(args.only, user_checks)
        return _run_on_cluster(args, targets, user_checks)
    given = [flag for flag in _CLUSTER_ONLY if getattr(args, flag) is not None]
    if given:
        flag = {"gpu_types": "--gpu-type", "gpu_products": "--gpu-product"}.get(given[0])
        flag = flag or "--" + given[0].replace("_", "-")
        raise UsageError(f"{flag} applies to --runner slurm or kubernetes", hint="add --runner slurm")
    if args.local == bool(targets):
        raise UsageError(
            "name IMAGEs (or --matrix), or use --local", hint="e.g. envkit validate acme/pytorch:2.6"
        )
    if args.out and len(targets) > 1:
        raise UsageError("--out takes one image; use --out-dir for several")
    user_checks = load_checks(args.checks) if args.checks else matrix_checks
    settings = replace(_settings(args), user_checks=user_checks)
    _check_user_only(args.only, user_checks)
    if args.local:
        with out.status("running the probe on this host…"):
            report = validate_local(settings, args.python)
        return 1 if failed(_keep(out, report, args.out or _default_out(args, "local"))) else 0
    return _validate_images(out, targets, settings, args)


def _validate_images(
    out: Console, targets: list[str], settings: RunSettings, args: argparse.Namespace
) -> int:
    """Validate every image that is on the engine, each report as it comes; the missing ones at the end."""
    with out.status("connecting to the engine…"):
        engine = get_engine()
        engine.info()
    reports: list[Report] = []
    missing: list[str] = []
    for number, ref in enumerate(targets, start=1):
        with out.status(f"validating {escape(ref)} ({number}/{len(targets)})…"):
            if engine.image(ref) is None and not DIGEST_REF.search(ref):
                missing.append(ref)  # a digest reference is pulled by validate_image
                continue
            report = validate_image(engine, ref, settings)
        reports.append(_keep(out, report, args.out or _default_out(args, ref)))
    if missing:
        raise ConfigError(
            f"no image {', '.join(repr(ref) for ref in missing)} on the engine: "
            f"{len(missing)} of {len(targets)} not validated",
            hint="build them (envkit build MATRIX) or pull them first; the others' reports are written",
        )
    return 1 if any(failed(report) for report in reports) else 0


def _keep(out: Console, report: Report, path: Path) -> Report:
    """Write `report` to `path` and show it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_report(report), encoding="utf-8")
    with commands_fenced():
        print_reports(out, [report])
    out.print(f"report: {escape(str(path))}")
    return report


def _run_on_cluster(args: argparse.Namespace, images: list[str], user_checks: UserChecks | None) -> int:
    """Validate `images` as scheduler jobs. The user's in-image checks travel with the staged probe; its
    metadata checks SKIP (the job's node, not this host, sees the image)."""
    if args.local or not images:
        raise UsageError(
            f"--runner {args.runner} needs IMAGEs (or --matrix)", hint="--local runs on this host"
        )
    if args.out and len(images) > 1:
        raise UsageError("--out takes one report; use --out-dir for several")
    settings = replace(_settings(args), user_checks=user_checks)
    probe = ProbeSettings(
        profile=settings.profile,
        only=settings.only,
        timeout_s=settings.timeout_s,
        require_gpu=args.require_gpu,
    )
    kinds = args.gpu_products if args.runner == "kubernetes" else args.gpu_types
    other = "--gpu-type" if args.runner == "kubernetes" else "--gpu-product"
    if (args.gpu_types if args.runner == "kubernetes" else args.gpu_products) is not None:
        raise UsageError(f"{other} does not apply to --runner {args.runner}")
    flags = {key: getattr(args, key) for key in _RUNNER_FLAGS} | {"gpu_types": kinds}
    resolved = resolve(args.runner, flags, args.runner_config, probe)
    targets = [Target(image=image, gpu_type=kind) for image in images for kind in resolved.gpu_types]
    runner = get_runner(resolved.config, JobProbe(settings))
    if args.emit_manifests:
        return _emit(runner, targets, args.emit_manifests)
    out = console()
    reports = run_jobs(runner, targets, resolved.config, _progress(out))
    paths = [args.out or _default_out(args, _report_name(target)) for target in targets]
    for report, path in zip(reports, paths, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump_report(report), encoding="utf-8")
    print_reports(out, reports)
    for path in paths:
        out.print(escape(f"report: {path}"), soft_wrap=True)
    return 1 if any(failed(report) for report in reports) else 0


_RUNNER_FLAGS = (
    "partition",
    "account",
    "time",
    "constraint",
    "container_runtime",
    "gpus_per_job",
    "job_dir",
    "slurm_rest",
    "namespace",
    "max_wait",
    "envkit_command",
)


_CLUSTER_ONLY = ("gpu_types", "gpu_products", *_RUNNER_FLAGS, "runner_config", "emit_manifests")


def _report_name(target: Target) -> str:
    return f"{target.image}@{target.gpu_type}" if target.gpu_type else target.image


def _progress(out: Console) -> Progress:
    """One plain line per change of a job's state (logs and terminals alike; never wrapped)."""

    def show(target: Target, job: Job | None, state: JobState) -> None:
        reason = f" ({state.reason})" if state.reason else ""
        node = f" on {state.node}" if state.node else ""
        job_id = f"job {job.id}" if job else "no job"
        line = f"{state.phase:8} {target.name}  {job_id}  {state.state}{reason}{node}"
        out.print(escape(clean_text(line)), soft_wrap=True, highlight=False)

    return show


def _emit(runner: Runner, targets: list[Target], folder: Path) -> int:
    emit = getattr(runner, "emit_manifests", None)
    if emit is None:
        raise UsageError(f"--emit-manifests applies to --runner kubernetes, not {runner.name}")
    written = emit(targets, folder)
    out = console()
    for path in written:
        out.print(escape(f"wrote {path}"), soft_wrap=True)
    return 0


def _settings(args: argparse.Namespace) -> RunSettings:
    gpus = args.gpus
    if gpus == "auto":
        gpus = "all" if host_has_gpu() else None
    elif gpus == "none":
        gpus = None
    else:
        parse_gpus(gpus)
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.cpus is not None and not 0.01 <= args.cpus <= 4096:
        raise UsageError(f"--cpus {args.cpus}: expected a number of cores such as 2 or 0.5")
    for check in args.only:
        # user.* ids are checked against the declared user checks (_check_user_only).
        if check not in known_check_ids() and not check.startswith(USER_PREFIX):
            raise UsageError(f"--only {check}: unknown check", hint=check_id_hint(check))
    return RunSettings(
        profile=args.profile,
        gpus=gpus,
        memory=parse_size(args.memory, "--memory"),
        pids=args.pids,
        shm=parse_size(args.shm_size, "--shm-size"),
        cpus=args.cpus,
        timeout_s=args.timeout,
        user=args.user,
        only=tuple(args.only),
        require_gpu=args.require_gpu,
    )


def _check_user_only(only: list[str], user_checks: UserChecks | None) -> None:
    declared = [check.id for check in user_checks.checks] if user_checks else []
    for check in only:
        if check.startswith(USER_PREFIX) and check not in declared:
            close = difflib.get_close_matches(check, declared, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "declare it in the checks file (--checks FILE)"
            raise UsageError(f"--only {check}: no such user check", hint=hint)


def parse_size(text: str, flag: str) -> int:
    """'8g', '512m', '1.5GiB', '1048576' → bytes."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise UsageError(f"{flag} {text!r}: expected a size like 8g or 512m")
    size = int(float(match[1]) * _UNITS[match[2].lower()])
    if size < 6 * 1024**2:
        raise UsageError(f"{flag} {text!r}: at least 6m is needed to start a container")
    return size


def _default_out(args: argparse.Namespace, ref: str) -> Path:
    folder = args.out_dir or scratch.reports_dir()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", ref).strip("._") or "report"
    return folder / f"{name}.json"
