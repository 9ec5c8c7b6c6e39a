"""envkit benchmarks: costs measured side by side in one run, printed as ratios (`make bench`).

    python benchmarks/run.py [--sections plan,build,validate,generate,ci,ci-cache] [--wheelhouse DIR]
                             [--ca-bundle FILE] [--skip-jobs] [--note TEXT]
                             [--out benchmarks/results/<machine>-<sections>.json]

Sections
- plan:      planning and rendering cost per raw cell for 100, 1,000 and 10,000-cell matrices.
- build:     the CPU demo matrix: cold first build (--no-cache) vs no-op rebuild vs a one-cell change;
             cold builds with --jobs 1 vs --jobs 2. Needs a Docker engine, the base image and a wheelhouse.
- validate:  `envkit validate IMAGE` vs the same probe with `--local` (container start, copy in/out).
- generate:  the reference decoder on this CPU: tokens/s with and without the KV cache at 128/512/2048.
- ci:        an empty second engine (scripts/runner-engine.sh) against a staging registry that holds the
             CPU demo (scripts/start-registry.sh): `envkit build --push` (every cell skipped by registry)
             vs the loop a CI job runs without envkit (`docker build` of every rendered context).
             Needs root (a second dockerd), the base image and a wheelhouse.
- ci-cache:  the cache half of ci: the first engine pushes the demo's cpu cell (BuildKit, inline cache),
             one change to that cell, then a fresh empty runner builds it with --push (reusing the
             registry's image of the cell) and another fresh one with --no-cache: seconds side by side.
The GPU counterpart (roofline, transformers side by side) is benchmarks/gpu_generation.py.
Never run from the test suite: numbers depend on the machine; ratios are what the targets are about.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envkit.matrix import load_matrix, parse_matrix  # noqa: E402
from envkit.render import FileHasher, RenderOptions, render_plan  # noqa: E402
from envkit.resolve import Plan, plan  # noqa: E402
from envkit.yamlsrc import load_text  # noqa: E402

RESULTS: dict[str, Any] = {}


def say(text: str = "") -> None:
    print(text, flush=True)


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """The median wall time of `repeat` runs (seconds) and the last result."""
    times, result = [], None
    for _ in range(repeat):
        clock = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - clock)
    return statistics.median(times), result


# --- plan / render --------------------------------------------------------------------------------

SIZES = {  # raw cells = torch × cuda × python × os × flavor
    100: (
        ["2.6", "2.7", "2.8", "2.9", "2.10"],
        ["12.4", "12.6"],
        ["3.11", "3.12"],
        ["ubuntu22.04", "ubuntu24.04", "debian12", "ubuntu20.04", "debian13"],
        ["runtime"],
    ),
    1000: (
        ["2.4", "2.5", "2.6", "2.7", "2.8", "2.9", "2.10", "2.11", "2.12", "2.13"],
        ["11.8", "12.4", "12.6", "12.8", "13.0"],
        ["3.10", "3.11", "3.12", "3.13"],
        ["ubuntu22.04", "ubuntu24.04", "debian12", "ubuntu20.04", "debian13"],
        ["runtime"],
    ),
    10000: (
        ["2.4.0", "2.4.1", "2.5.0", "2.5.1", "2.6.0", "2.7.0", "2.7.1", "2.8.0", "2.9.0", "2.9.1"],
        ["11.8", "12.1", "12.4", "12.6", "12.8", "12.9", "13.0", "none", "12.2", "12.3"],
        ["3.9", "3.10", "3.11", "3.12", "3.13"],
        [
            "ubuntu22.04",
            "ubuntu24.04",
            "debian12",
            "ubuntu20.04",
            "debian13",
            "debian11",
            "ubuntu18.04",
            "debian10",
            "ubuntu23.04",
            "ubuntu25.04",
        ],
        ["runtime", "devel"],
    ),
}


def matrix_text(
    torch: list[str], cuda: list[str], python: list[str], oses: list[str], flavors: list[str]
) -> str:
    def quoted(values: list[str]) -> str:
        return "[" + ", ".join(f"'{v}'" for v in values) + "]"

    return (
        f"image: {{repository: bench/pytorch}}\naxes:\n  torch: {quoted(torch)}\n  cuda: {quoted(cuda)}\n"
        f"  python: {quoted(python)}\n  os: {quoted(oses)}\n  flavor: {quoted(flavors)}\n"
    )


def plan_text(text: str) -> Plan:
    """Parse, expand and resolve a matrix given as YAML text."""
    return plan(parse_matrix(load_text(text, "bench.yaml")))


def bench_plan() -> None:
    say("== planning and rendering cost by matrix size")
    rows = []
    for axes in SIZES.values():
        text = matrix_text(*axes)
        count = 1
        for values in axes:
            count *= len(values)
        plan_s, the_plan = timed(partial(plan_text, text))
        render_s, _ = timed(partial(render_plan, the_plan, RenderOptions(), FileHasher()), repeat=1)
        kept = len(the_plan.cells)
        rows.append(
            {
                "raw_cells": count,
                "kept": kept,
                "plan_s": plan_s,
                "render_s": render_s,
                "plan_us_per_raw_cell": plan_s / count * 1e6,
                "render_ms_per_cell": render_s / max(kept, 1) * 1e3,
            }
        )
        say(
            f"  {count:>6} raw cells ({kept:>5} kept): plan {plan_s:7.3f} s "
            f"({plan_s / count * 1e6:6.1f} µs/cell), "
            f"render {render_s:7.3f} s ({render_s / max(kept, 1) * 1e3:5.2f} ms/kept cell)"
        )
    base = rows[0]["plan_us_per_raw_cell"]
    for row in rows[1:]:
        say(
            f"  per-cell plan cost at {row['raw_cells']} vs {rows[0]['raw_cells']}: "
            f"{row['plan_us_per_raw_cell'] / base:.2f}x (1.0 = linear growth)"
        )
    RESULTS["plan"] = rows


# --- build ------------------------------------------------------------------------------------------


def envkit(*argv: str) -> tuple[int, float, str]:
    clock = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "envkit", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "CI": "true"},
        check=False,
    )
    return done.returncode, time.perf_counter() - clock, done.stdout + done.stderr


def demo_matrix(folder: Path, repository: str, extra: str = "") -> Path:
    """Write the CPU demo matrix (plus `extra` YAML) to `folder`/cpu-demo.yaml, overwriting it: a user
    edits a matrix in place, and the one-cell change must differ from the first build only by its edit."""
    text = (ROOT / "images" / "cpu-demo.yaml").read_text().replace("envkit-demo/pytorch", repository)
    path = folder / "cpu-demo.yaml"
    path.write_text(text + extra)
    return path


def build_ratio(args: argparse.Namespace) -> None:
    say("== build orchestration (CPU demo matrix, 2 cells)")
    flags = [
        *(["--wheelhouse", args.wheelhouse] if args.wheelhouse else []),
        *(["--ca-bundle", args.ca_bundle] if args.ca_bundle else []),
    ]
    repository = f"envkit-bench/demo-{uuid.uuid4().hex[:6]}"
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        change = "include:\n  - {flavor: cpu, packages: [six==1.16.0]}\n"
        steps = [  # (name, YAML appended to the demo matrix, extra flags)
            ("first build, cold (--no-cache, --jobs 2)", "", ["--no-cache", "--jobs", "2"]),
            ("no-op rebuild", "", []),
            ("one-cell change", change, []),
        ]
        for name, extra, argv in steps:
            matrix = demo_matrix(folder, repository, extra)
            report = str(folder / "r.json")
            code, seconds, output = envkit("build", str(matrix), *argv, *flags, "--report", report)
            if code != 0:
                say(output[-3000:])
                raise SystemExit(f"benchmark build failed: {name}")
            statuses = [c["status"] for c in json.loads((folder / "r.json").read_text())["cells"]]
            result[name] = {"seconds": seconds, "statuses": statuses}
            say(f"  {name:42} {seconds:7.1f} s  {statuses}")
        first = result["first build, cold (--no-cache, --jobs 2)"]["seconds"]
        noop = result["no-op rebuild"]["seconds"]
        changed = result["one-cell change"]["seconds"]
        say(f"  no-op / first build      = {noop / first:.3f} (target < 0.05)")
        say(
            f"  one-cell change / first  = {changed / first:.3f} "
            "(one of two cells rebuilt, on top of its cached torch layer)"
        )
        result["ratios"] = {"noop_over_first": noop / first, "one_cell_change_over_first": changed / first}
        if not args.skip_jobs:
            code, one_job, output = envkit("build", str(matrix), "--no-cache", "--jobs", "1", *flags)
            if code != 0:
                say(output[-3000:])
                raise SystemExit("benchmark build failed: cold build --jobs 1")
            say(f"  cold build --jobs 1      {one_job:7.1f} s")
            say(
                f"  --jobs 2 speed-up        = {one_job / first:.2f}x "
                "(2 cores; both cells install the same torch)"
            )
            result["jobs1_seconds"] = one_job
            result["ratios"]["jobs2_speedup"] = one_job / first
        _remove_repository(repository)
    RESULTS["build"] = result


def _remove_repository(repository: str) -> None:
    listing = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if listing:
        subprocess.run(["docker", "image", "rm", "-f", *listing], capture_output=True, check=False)


# --- validate ---------------------------------------------------------------------------------------


def validate_overhead(args: argparse.Namespace) -> None:
    say("== validation overhead: in a container vs --local (quick profile)")
    image = args.image
    with tempfile.TemporaryDirectory() as tmp:
        code_c, container_s, out_c = envkit("validate", image, "--out", f"{tmp}/c.json")
        code_l, local_s, out_l = envkit("validate", "--local", "--out", f"{tmp}/l.json")
        for name, code, output in (("in a container", code_c, out_c), ("--local", code_l, out_l)):
            if code != 0:
                say(f"  validate {name} exited {code}; its output ends:\n{output[-2000:]}")
        reports = {
            "container": report_timing(Path(tmp, "c.json")),
            "local": report_timing(Path(tmp, "l.json")),
        }
    say(f"  envkit validate {image}: {container_s:6.1f} s (exit {code_c})")
    say(f"  envkit validate --local:  {local_s:6.1f} s (exit {code_l})")
    say(f"  container / local = {container_s / local_s:.2f}x; overhead {container_s - local_s:+.1f} s")
    for name, timing in reports.items():
        if timing:
            say(
                f"  {name:9}: runner {timing['runner_s']:6.1f} s, the checks themselves "
                f"{timing['checks_s']:6.1f} s, outside the checks {timing['outside_checks_s']:5.1f} s"
            )
    RESULTS["validate"] = {
        "image": image,
        "profile": "quick",
        "container_s": container_s,
        "local_s": local_s,
        "exit_codes": {"container": code_c, "local": code_l},
        "overhead_s": container_s - local_s,
        "ratio": container_s / local_s,
        "reports": reports,
    }


def report_timing(path: Path) -> dict[str, Any]:
    """The runner's seconds and the checks' own seconds from a report envkit wrote ({} without one)."""
    if not path.exists():
        return {}
    report = json.loads(path.read_text())
    checks = {c["id"]: c["duration_s"] for c in report["checks"] if c["id"] != "runner.container"}
    runner_s, checks_s = report["runner"]["duration_s"], sum(checks.values())
    # runner - checks is the container's own cost (start, copy in/out, removal), free of the checks'
    # load-dependent run time, which varies far more between two runs than the overhead itself.
    return {
        "runner_s": runner_s,
        "checks_s": round(checks_s, 2),
        "outside_checks_s": round(runner_s - checks_s, 2),
        "check_s": checks,
    }


# --- generation -------------------------------------------------------------------------------------


def generation(args: argparse.Namespace) -> None:
    say("== reference decoder on this CPU (tiny preset, fp32, batch 1)")
    from benchmarks.generation import kv_cache_table

    RESULTS["generate"] = kv_cache_table(contexts=(128, 512, 2048), device="cpu", say=say)


# --- ci ---------------------------------------------------------------------------------------------


def script(name: str, *argv: str) -> str:
    """Run scripts/NAME; its last stdout line (an address or a DOCKER_HOST)."""
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / name), *argv], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"scripts/{name} {' '.join(argv)} failed: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def timed_run(argv: list[str], **env: str) -> float:
    clock = time.perf_counter()
    done = subprocess.run(
        argv, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"benchmark step failed: {' '.join(argv)}\n{(done.stdout + done.stderr)[-3000:]}")
    return time.perf_counter() - clock


def envkit_argv(*argv: str) -> list[str]:
    return [sys.executable, "-m", "envkit", *argv]


def copy_image(ref: str, host: str) -> None:
    """`docker save REF | docker -H HOST load`: the naive loop needs the base on the empty runner."""
    save = subprocess.Popen(["docker", "save", ref], stdout=subprocess.PIPE)
    subprocess.run(["docker", "-H", host, "load"], stdin=save.stdout, capture_output=True, check=True)
    if save.wait() != 0:
        raise SystemExit(f"docker save {ref} failed")


def naive_loop(matrix: Path, flags: list[str], folder: Path, host: str) -> float:
    """Seconds for what a CI job without envkit runs: `docker build` of every rendered context."""
    timed_run(envkit_argv("render", str(matrix), *flags, "-o", str(folder)))
    cells = sorted(cell for cell in folder.iterdir() if (cell / "Dockerfile").exists())
    # The runner's own bridge has no NAT (--iptables=false): its builds reach pip through the host network.
    build = ["docker", "-H", host, "build", "--network", "host", "-q"]
    return sum(timed_run([*build, str(cell)]) for cell in cells)


def ci_ratio(args: argparse.Namespace) -> None:
    say("== CI on an empty runner: envkit build --push (registry skip) vs a plain docker build loop")
    flags = [
        *(["--wheelhouse", args.wheelhouse] if args.wheelhouse else []),
        *(["--ca-bundle", args.ca_bundle] if args.ca_bundle else []),
    ]
    port, runner = str(49152 + os.getpid() % 10000), f"bench{os.getpid() % 100000}"
    repository = f"envkit-bench/ci-{uuid.uuid4().hex[:6]}"
    staging = f"{script('start-registry.sh', port)}/stage"
    try:
        host = script("runner-engine.sh", "start", runner)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            matrix = demo_matrix(folder, repository)
            populate = timed_run(envkit_argv("build", str(matrix), *flags, "--push", staging))
            say(f"  populate staging (first engine)     {populate:7.1f} s")
            report = folder / "b.json"
            envkit_s = timed_run(
                envkit_argv("build", str(matrix), *flags, "--push", staging, "--report", str(report)),
                DOCKER_HOST=host,
            )
            statuses = [c.get("skipped_by") for c in json.loads(report.read_text())["cells"]]
            say(f"  envkit build --push, empty runner   {envkit_s:7.1f} s  skipped by {statuses}")
            copy_image(plan(load_matrix(matrix)).cells[0].base, host)
            naive = naive_loop(matrix, flags, folder / "rendered", host)
            say(f"  docker build loop, empty runner     {naive:7.1f} s")
            say(f"  envkit / naive                      = {envkit_s / naive:.4f}")
            RESULTS["ci"] = {
                "populate_s": populate,
                "envkit_push_s": envkit_s,
                "naive_build_s": naive,
                "ratio": envkit_s / naive,
                "skipped_by": statuses,
                "registry_cache": "see the ci-cache section",
            }
    finally:
        script("runner-engine.sh", "stop", runner)
        script("start-registry.sh", "stop", port)
        _remove_repository(repository)


# One-cell changes for ci-cache: `package` lands in the dependency stage, which BuildKit's inline cache
# does not hold (only the final image's layers); `env` lands after the environment is copied in.
CACHE_CHANGES = {
    "package": "include:\n  - {flavor: cpu, packages: [six==1.16.0]}\n",
    "env": "include:\n  - {flavor: cpu, env: {APP_MODE: ci}}\n",
}


def ci_cache(args: argparse.Namespace) -> None:
    say(f"== CI one-cell change ({args.cache_change}) on an empty runner: with vs without the registry cache")
    # --network host: the runner's bridge has no NAT; BuildKit's cache keys include the RUN network, so
    # the first engine's build uses it too.
    flags = [
        *(["--wheelhouse", args.wheelhouse] if args.wheelhouse else []),
        *(["--ca-bundle", args.ca_bundle] if args.ca_bundle else []),
        *("--buildkit", "--network", "host"),
    ]
    port = str(49152 + (os.getpid() + 7) % 10000)
    repository = f"envkit-bench/cache-{uuid.uuid4().hex[:6]}"
    staging = f"{script('start-registry.sh', port)}/stage"
    result: dict[str, Any] = {"change": args.cache_change}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            matrix = demo_matrix(folder, repository)
            cells = plan(load_matrix(matrix)).cells
            only = ["--only", next(c.id for c in cells if c.flavor == "cpu")]
            populate = timed_run(envkit_argv("build", str(matrix), *flags, *only, "--push", staging))
            say(f"  populate staging (first engine)        {populate:7.1f} s")
            result["populate_s"] = populate
            matrix = demo_matrix(folder, repository, CACHE_CHANGES[args.cache_change])
            runs: tuple[tuple[str, list[str]], ...] = (("with_cache", []), ("without_cache", ["--no-cache"]))
            for number, (name, extra) in enumerate(runs):
                runner = f"bcache{os.getpid() % 10000}{number}"
                host = script("runner-engine.sh", "start", runner)
                try:
                    copy_image(cells[0].base, host)  # not in any registry: every runner needs it loaded
                    report = folder / f"{name}.json"
                    argv = ["build", str(matrix), *flags, *only, *extra, "--push", staging]
                    seconds = timed_run(envkit_argv(*argv, "--report", str(report)), DOCKER_HOST=host)
                finally:
                    script("runner-engine.sh", "stop", runner)
                [cell] = json.loads(report.read_text())["cells"]
                # BuildKit's plain progress marks each step it took from a cache "#N CACHED".
                log = (ROOT / cell["log"]).read_text(errors="replace").splitlines()
                cached = sum(1 for line in log if line.startswith("#") and line.endswith(" CACHED"))
                result[name] = {
                    "seconds": seconds,
                    "status": cell["status"],
                    "cache_from": cell["cache_from"],
                    "cached_steps": cached,
                }
                say(f"  empty runner, {name:24} {seconds:7.1f} s  {cell['status']}, {cached} steps cached")
            with_s, without_s = result["with_cache"]["seconds"], result["without_cache"]["seconds"]
            result["with_over_without"] = with_s / without_s
            say(f"  with / without cache                   = {with_s / without_s:.3f}")
    finally:
        script("start-registry.sh", "stop", port)
        _remove_repository(repository)
    RESULTS["ci_cache"] = result


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "plan": lambda args: bench_plan(),
    "build": build_ratio,
    "validate": validate_overhead,
    "generate": generation,
    "ci": ci_ratio,
    "ci-cache": ci_cache,
}


def machine(note: str | None) -> dict[str, Any]:
    """What the numbers were measured on: CPUs, memory, platform, date, load, and the caller's note."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1),
        "gpu": None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "note": note,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sections", default="plan,build,validate,generate,ci,ci-cache")
    parser.add_argument(
        "--cache-change", choices=sorted(CACHE_CHANGES), default="env", help="the ci-cache change"
    )
    parser.add_argument("--wheelhouse", default=os.environ.get("PIP_FIND_LINKS"))
    parser.add_argument("--ca-bundle", default=os.environ.get("PIP_CERT"))
    parser.add_argument(
        "--image",
        default="envkit-demo/pytorch:2.13.0-cpu-py3.11-debian12-cpu",
        help="image for the validate section (built by `make demo`)",
    )
    parser.add_argument("--skip-jobs", action="store_true", help="skip the --jobs 1 cold build")
    parser.add_argument("--note", help="saved with the machine description, e.g. what else was running")
    parser.add_argument("--out", type=Path, help="write the measured numbers here as JSON")
    args = parser.parse_args()
    sections = args.sections.split(",")
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    say(f"envkit benchmarks on {platform.node()} ({os.cpu_count()} CPUs, {platform.platform()})")
    # Other work on the machine moves every number here: the load average is saved with each section.
    RESULTS["load_average"] = {}
    RESULTS["section_seconds"] = {}
    for name in (name for name in SECTIONS if name in sections):
        before, clock = os.getloadavg(), time.perf_counter()
        SECTIONS[name](args)
        RESULTS["section_seconds"][name] = round(time.perf_counter() - clock, 1)
        RESULTS["load_average"][name] = {"before": before, "after": os.getloadavg()}
        say(
            f"  ({name}: {RESULTS['section_seconds'][name]:.0f} s; 1-minute load {before[0]:.1f} -> "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
        )
    if args.out:
        RESULTS["machine"] = machine(args.note)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(RESULTS, indent=2) + "\n")
        say(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
