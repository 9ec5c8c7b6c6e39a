#!/bin/bash
#SBATCH --job-name=envkit-validate
#SBATCH --comment=envkit-validate
#SBATCH --output=/shared/envkit-jobs/job-1/job.log
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --time=00:30:00
#SBATCH --no-requeue
#SBATCH --gres=gpu:h100:1
#SBATCH --constraint=h100
#SBATCH --partition=gpu
#SBATCH --account=ml-infra
# envkit: validate registry.example:5000/acme/pytorch:2.6-cu124 on GPU type h100
set -u
out=/shared/envkit-jobs/job-1
{
  printf 'job_id=%s\n' "${SLURM_JOB_ID:-}"
  printf 'node=%s\n' "${SLURMD_NODENAME:-$(hostname)}"
  printf 'job_gpus=%s\n' "${SLURM_JOB_GPUS:-}"
  printf 'gpu_model=%s\n' "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
} >"$out/job.env"
run_pyxis() {
  srun --ntasks=1 --container-image='registry.example:5000#acme/pytorch:2.6-cu124' \
    --container-mounts="$out/probe:/tmp/envkit:ro,$out/result:/tmp/envkit-out" --no-container-mount-home \
    /bin/sh -c 'run the probe' envkit-probe --out /tmp/envkit-out/result.json
}
run_apptainer() {
  apptainer exec --nv --containall --no-home --bind "$out/probe":/tmp/envkit:ro --bind "$out/result":/tmp/envkit-out \
    docker://registry.example:5000/acme/pytorch:2.6-cu124 \
    /bin/sh -c 'run the probe' envkit-probe --out /tmp/envkit-out/result.json
}
run_podman() {
  local devices=() i gpus="${SLURM_JOB_GPUS:-}"
  for i in ${gpus//,/ }; do devices+=(--device "nvidia.com/gpu=$i"); done
  podman run --rm --network=none --cap-drop=all --security-opt=no-new-privileges \
    "${devices[@]}" -v "$out/probe":/tmp/envkit:ro -v "$out/result":/tmp/envkit-out \
    registry.example:5000/acme/pytorch:2.6-cu124 \
    /bin/sh -c 'run the probe' envkit-probe --out /tmp/envkit-out/result.json
}
run_docker() {
  # The node's envkit runs the probe in the node's engine, with its own sandbox; the GPUs are
  # the job's own (Slurm's allocation), none when the node has no NVIDIA driver.
  local gpus=none
  if [ -n "${SLURM_JOB_GPUS:-}" ] && command -v nvidia-smi >/dev/null 2>&1; then gpus="device=$SLURM_JOB_GPUS"; fi
  local checks=()
  if [ -f "$out/checks.json" ]; then checks=(--checks "$out/checks.json"); fi
  envkit validate registry.example:5000/acme/pytorch:2.6-cu124 --profile quick \
    ${checks[@]+"${checks[@]}"} --gpus "$gpus" --out "$out/report.json"
}
if srun --help 2>/dev/null | grep -q -- --container-image; then runtime=pyxis
elif command -v apptainer >/dev/null 2>&1; then runtime=apptainer
elif command -v podman >/dev/null 2>&1; then runtime=podman
elif command -v docker >/dev/null 2>&1; then runtime=docker
else echo "envkit: no container runtime on $(hostname) (pyxis, apptainer, podman, docker)" >&2; exit 96
fi
printf 'runtime=%s\n' "$runtime" >>"$out/job.env"
"run_$runtime"
code=$?
printf '%s\n' "$code" >"$out/exit-code"
exit "$code"
