#!/usr/bin/env bash
# GPU verification of the probe and the generation benchmark, for a lent GPU machine (no Docker, no network,
# envkit maybe not installed):
#   1. pytest -m "gpu and not slow" tests/gpu                         -> $OUT/gpu-tests.{log,xml}
#   2. the probe's full profile (1b preset): through the envkit CLI, `envkit validate --local --profile full`,
#      when it imports here (it needs docker, jinja2, pyyaml, rich)  -> $OUT/validate-local.{json,log};
#      otherwise (or when that wrote no report) the probe directly    -> $OUT/probe-full.{json,log}
#   3. a summary that also asserts the full run                       -> $OUT/summary.txt
#   4. benchmarks/gpu_generation.py: envkit's decode modes against the bandwidth roofline and against
#      transformers, side by side                                     -> $OUT/gpu-generation.{json,log}
# The slow GPU test (the same 1b full-profile run under pytest) is left out here: step 2 runs it once
# and step 3 asserts the same things on its JSON. About 6 minutes on an H100; each step has a time bound
# (TESTS_TIMEOUT_S, PROBE_TIMEOUT_S, GEN_TIMEOUT_S; GEN_ARGS adds arguments, e.g. --quick).
# Usage: OUT=/some/dir scripts/gpu-check.sh      (PYTHON=python3 by default)
# Exit status: non-zero when a GPU test failed, the probe could not run, a probe check FAILed/ERRORed, or
# the benchmark wrote no results. Slow benchmark numbers never fail it: they are for people to read.
set -uo pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
started=$SECONDS

{ nvidia-smi || true; "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'; } \
    >"$OUT/environment.txt" 2>&1

echo "== 1. GPU tests"
timeout -k 10 "${TESTS_TIMEOUT_S:-180}" "$PY" -m pytest -m "gpu and not slow" tests/gpu -q -rA -s \
    -p no:cacheprovider --junitxml="$OUT/gpu-tests.xml" >"$OUT/gpu-tests.log" 2>&1
tests_rc=$?
tail -n 25 "$OUT/gpu-tests.log"

echo "== 2. probe, full profile"
report=""
if cli_error=$("$PY" -c 'import importlib, envkit.cli as c; [importlib.import_module(m) for m in c.COMMAND_MODULES]' \
        2>&1); then
    timeout -k 10 "${PROBE_TIMEOUT_S:-240}" "$PY" -m envkit validate --local --profile full \
        --out "$OUT/validate-local.json" >"$OUT/validate-local.log" 2>&1
    probe_rc=$?
    tail -n 30 "$OUT/validate-local.log"
    if [ -s "$OUT/validate-local.json" ]; then
        report="$OUT/validate-local.json"
    else
        echo "envkit validate --local wrote no report (exit $probe_rc); running the probe directly"
    fi
else
    echo "the envkit CLI does not import here ($(echo "$cli_error" | tail -n 1)); running the probe directly"
fi
if [ -z "$report" ]; then
    timeout -k 10 "${PROBE_TIMEOUT_S:-240}" "$PY" -m envkit.probe --profile full --out "$OUT/probe-full.json" \
        2>"$OUT/probe-full.log"
    probe_rc=$?
    cat "$OUT/probe-full.log"
    report="$OUT/probe-full.json"
fi

echo "== 3. summary of $report"
"$PY" - "$report" >"$OUT/summary.txt" 2>&1 <<'PYEOF'
import json, sys
report = json.load(open(sys.argv[1]))
checks = {c["id"]: c for c in report["checks"]}
for check in report["checks"]:
    print(f"{check['id']:<20} {check['status']:<5} {check['summary']}")
generate = checks["throughput.generate"]
metrics, details = generate["metrics"], generate["details"]
print(json.dumps(metrics, indent=1))
print(json.dumps({k: details.get(k) for k in (
    "preset", "device", "mode", "modes", "mode_errors", "greedy_margin_max_std", "nocache_tokens_match",
    "bytes_per_token", "peak_bandwidth_gbps", "peak_bandwidth_source", "achieved_bandwidth_gbps", "spread",
    "warnings", "problems")}, indent=1))
bad = [f"{c['id']} {c['status']}" for c in report["checks"] if c["status"] in ("FAIL", "ERROR")]
if details.get("preset") != "1b" or "bandwidth_utilisation" not in metrics:
    bad.append("throughput.generate did not run the 1b preset with a bandwidth figure")
if not 0 < metrics.get("bandwidth_utilisation", 0) <= 1:
    bad.append(f"bandwidth_utilisation out of range: {metrics.get('bandwidth_utilisation')}")
print("ASSERTIONS:", "ok" if not bad else "; ".join(bad))
sys.exit(1 if bad else 0)
PYEOF
summary_rc=$?
cat "$OUT/summary.txt"

echo "== 4. generation benchmark (envkit vs roofline vs transformers), $((SECONDS - started)) s so far"
# shellcheck disable=SC2086  # GEN_ARGS is a list of arguments
timeout -k 10 "${GEN_TIMEOUT_S:-240}" "$PY" benchmarks/gpu_generation.py --out "$OUT/gpu-generation.json" \
    ${GEN_ARGS:-} >"$OUT/gpu-generation.log" 2>&1
gen_rc=$?
tail -n 40 "$OUT/gpu-generation.log"
gen_ok=0
[ -s "$OUT/gpu-generation.json" ] && gen_ok=1

echo "gpu-check: tests rc=$tests_rc probe rc=$probe_rc summary rc=$summary_rc benchmark rc=$gen_rc" \
    "(results written: $gen_ok) in $((SECONDS - started)) s"
echo "results in $OUT:"
ls -l "$OUT"
echo "to keep the benchmark: cp $OUT/gpu-generation.json benchmarks/results/gpu-<device>-generation.json" \
    "(see benchmarks/README.md)"
[ "$tests_rc" -eq 0 ] && [ "$probe_rc" -eq 0 ] && [ "$summary_rc" -eq 0 ] && [ "$gen_ok" -eq 1 ]
