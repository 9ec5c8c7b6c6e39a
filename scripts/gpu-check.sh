#!/usr/bin/env bash
# GPU verification of the probe, for a lent GPU machine (no Docker, no network, envkit not installed):
#   1. pytest -m "gpu and not slow" tests/gpu   -> $OUT/gpu-tests.{log,xml}
#   2. the probe's full profile (1b preset)      -> $OUT/probe-full.{json,log}
#   3. a summary that also asserts the full run  -> $OUT/summary.txt
# The slow GPU test (the same 1b full-profile run under pytest) is left out here: step 2 runs it once
# and step 3 asserts the same things on its JSON.
# Usage: OUT=/some/dir scripts/gpu-check.sh      (PYTHON=python3 by default)
# Exit status: non-zero when a GPU test failed, the probe could not run, or a probe check FAILed/ERRORed.
set -uo pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{ nvidia-smi || true; "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'; } \
    >"$OUT/environment.txt" 2>&1

"$PY" -m pytest -m "gpu and not slow" tests/gpu -q -rA -s -p no:cacheprovider --junitxml="$OUT/gpu-tests.xml" \
    >"$OUT/gpu-tests.log" 2>&1
tests_rc=$?
tail -n 25 "$OUT/gpu-tests.log"

"$PY" -m envkit.probe --profile full --out "$OUT/probe-full.json" 2>"$OUT/probe-full.log"
probe_rc=$?
cat "$OUT/probe-full.log"

"$PY" - "$OUT/probe-full.json" >"$OUT/summary.txt" 2>&1 <<'PYEOF'
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

echo "gpu-check: tests rc=$tests_rc probe rc=$probe_rc summary rc=$summary_rc; results in $OUT"
[ "$tests_rc" -eq 0 ] && [ "$probe_rc" -eq 0 ] && [ "$summary_rc" -eq 0 ]
