#!/usr/bin/env bash
# GPU verification of the probe and the generation benchmark, for a lent GPU machine (no Docker, no
# network, envkit maybe not installed). One run fits in BUDGET_S seconds (default 450: under 8 minutes
# on an H100/H200), split between the steps, each under `timeout` and its own time budget:
#   1. pytest -m "gpu and not slow" tests/gpu         (TESTS_S, default 15 % of the budget)
#                                                       -> $OUT/gpu-tests.{log,xml}
#   2. the probe's full profile (1b preset), run directly with --budget-s so its own limits fire first
#      and its report is written even when it is stopped (PROBE_S, default 40 %)
#                                                       -> $OUT/probe-full.{json,log}
#   3. benchmarks/gpu_generation.py: envkit's decode modes against the bandwidth roofline and against
#      transformers, side by side (what is left, less SUMMARY_RESERVE_S)
#                                                       -> $OUT/gpu-generation.{json,log}
#   4. a summary of whatever the steps left, with each step's exit status; written even when a step
#      failed or wrote nothing                          -> $OUT/summary.txt
# plus $OUT/environment.txt: 8 files at most, all directly in $OUT.
# Usage: OUT=/some/dir scripts/gpu-check.sh [PROBE ARGUMENTS...]
#   Arguments go to the probe (e.g. --only throughput.generate to spend its share on the numbers,
#   --preset 8b). Environment: PYTHON
#   (python3), BUDGET_S, TESTS_S, PROBE_S, GEN_ARGS (more benchmark arguments, e.g. --quick),
#   EXPECT_GPU=0 to skip the summary's GPU assertions (a CPU dry run of this script).
# Exit status: non-zero when a GPU test failed, the probe wrote no report or a check FAILed/ERRORed, the
# summary's assertions failed, or the benchmark wrote no results. Slow benchmark numbers never fail it.
set -uo pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"
PY="${PYTHON:-python3}"
BUDGET_S="${BUDGET_S:-450}"
TESTS_S="${TESTS_S:-$((BUDGET_S * 15 / 100))}"
PROBE_S="${PROBE_S:-$((BUDGET_S * 40 / 100))}"
SUMMARY_RESERVE_S=10 # the summary and the listing at the end
GRACE_S=5            # after a step's limit: SIGTERM, then SIGKILL this much later
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
started=$SECONDS
tests_rc=- probe_rc=- gen_rc=-

left() { echo $((BUDGET_S - (SECONDS - started) - SUMMARY_RESERVE_S)); }

{
    timeout 20 nvidia-smi || true
    timeout 40 "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
} >"$OUT/environment.txt" 2>&1

echo "== 1. GPU tests (up to $TESTS_S s)"
timeout -k "$GRACE_S" "$TESTS_S" "$PY" -m pytest -m "gpu and not slow" tests/gpu -q -rA -s \
    -p no:cacheprovider --junitxml="$OUT/gpu-tests.xml" >"$OUT/gpu-tests.log" 2>&1
tests_rc=$?
tail -n 25 "$OUT/gpu-tests.log"

probe_s=$PROBE_S
[ "$probe_s" -gt "$(left)" ] && probe_s=$(left)
echo "== 2. probe, full profile (up to $probe_s s) $*"
if [ "$probe_s" -gt 20 ]; then
    # The probe's budget is a few seconds under the step's limit: its own limits fire first, and a
    # SIGTERM from `timeout` still leaves a complete report.
    timeout -k "$GRACE_S" "$probe_s" "$PY" -m envkit.probe --profile full --budget-s "$((probe_s - 5))" \
        --out "$OUT/probe-full.json" "$@" 2>"$OUT/probe-full.log"
    probe_rc=$?
    tail -n 20 "$OUT/probe-full.log"
else
    echo "not started: only $probe_s s left" >"$OUT/probe-full.log"
fi

gen_s=$(left)
echo "== 3. generation benchmark (up to $gen_s s)"
if [ "$gen_s" -gt 30 ]; then
    # shellcheck disable=SC2086  # GEN_ARGS is a list of arguments
    timeout -k "$GRACE_S" "$gen_s" "$PY" benchmarks/gpu_generation.py --out "$OUT/gpu-generation.json" \
        --budget-s "$((gen_s - 15))" ${GEN_ARGS:-} >"$OUT/gpu-generation.log" 2>&1
    gen_rc=$?
    tail -n 40 "$OUT/gpu-generation.log"
else
    echo "not started: only $gen_s s left" >"$OUT/gpu-generation.log"
fi

echo "== 4. summary"
# Leftovers of an atomic write that a kill interrupted would be extra files: remove them.
rm -f "$OUT"/*.partial "$OUT"/.probe-*.json.tmp
"$PY" - "$OUT" "$tests_rc" "$probe_rc" "$gen_rc" "${EXPECT_GPU:-1}" "$((SECONDS - started))" \
    >"$OUT/summary.txt" 2>&1 <<'PYEOF'
import json, os, sys

out, tests_rc, probe_rc, gen_rc, expect_gpu, elapsed = sys.argv[1:7]
bad = []
print(f"steps: gpu tests rc={tests_rc}, probe rc={probe_rc}, benchmark rc={gen_rc}; {elapsed} s before the summary")
if tests_rc != "0":
    bad.append(f"GPU tests exit {tests_rc} (see gpu-tests.log)")

def load(name):
    try:
        with open(os.path.join(out, name)) as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        bad.append(f"{name}: {error}")
        return None

report = load("probe-full.json")
if report is not None:
    print(f"probe run: {report.get('run')}")
    for check in report["checks"]:
        print(f"{check['id']:<20} {check['status']:<5} {check['summary']}")
        if check["status"] in ("FAIL", "ERROR"):
            bad.append(f"{check['id']} {check['status']}")
    generate = {c["id"]: c for c in report["checks"]}.get("throughput.generate")
    if generate is not None:
        metrics, details = generate["metrics"], generate["details"]
        print(json.dumps(metrics, indent=1))
        print(json.dumps({k: details.get(k) for k in (
            "preset", "device", "mode", "modes", "mode_errors", "greedy_margin_max_std",
            "modes_parted_from_eager_at", "nocache_tokens_match", "bytes_per_token", "peak_bandwidth_gbps",
            "peak_bandwidth_source", "achieved_bandwidth_gbps", "stats", "noisy", "noise_reason",
            "environment", "warnings", "problems")}, indent=1))
        if expect_gpu == "1":
            if details.get("preset") != "1b" or "bandwidth_utilisation" not in metrics:
                bad.append("throughput.generate did not run the 1b preset with a bandwidth figure")
            elif not 0 < metrics["bandwidth_utilisation"] <= 1:
                bad.append(f"bandwidth_utilisation out of range: {metrics['bandwidth_utilisation']}")
bench = load("gpu-generation.json")
if bench is not None:
    print("benchmark comparison:", json.dumps(bench.get("comparison"), indent=1))
    print("benchmark failures:", json.dumps(bench.get("failures"), indent=1))
    if not bench.get("modes"):
        bad.append("the benchmark measured no mode")
print("ASSERTIONS:", "ok" if not bad else "; ".join(bad))
sys.exit(1 if bad else 0)
PYEOF
summary_rc=$?
cat "$OUT/summary.txt"

echo "gpu-check: tests rc=$tests_rc probe rc=$probe_rc benchmark rc=$gen_rc summary rc=$summary_rc" \
    "in $((SECONDS - started)) s; results in $OUT:"
ls -l "$OUT"
echo "to keep the benchmark: cp $OUT/gpu-generation.json benchmarks/results/gpu-<device>-generation.json" \
    "(see benchmarks/README.md)"
[ "$tests_rc" = 0 ] && [ "$summary_rc" = 0 ]
