#!/usr/bin/env bash
# Run an interp sweep on SLURM through Ray: one Ray head on the first node, one Ray worker on
# each other node, then `interp sweep --backend ray` on the head. Submit with
#   sbatch --nodes=4 --gpus-per-node=1 --cpus-per-task=16 scripts/slurm_ray_sweep.sh SWEEP.yaml OUT
# OUT must be on a filesystem every node sees at the same path (runs are written there by the
# node that trains them). Every node needs this checkout's .venv (on the shared filesystem).
# Not run in this project's CI (no SLURM there); the Ray part is the tested backend.
#SBATCH --job-name=interp-sweep
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
set -euo pipefail
SWEEP=${1:?usage: sbatch scripts/slurm_ray_sweep.sh SWEEP.yaml OUT [extra interp sweep args]}
OUT=${2:?give an output folder on a shared filesystem}
shift 2
cd "$(dirname "$0")/.."
VENV=$PWD/.venv
nodes=($(scontrol show hostnames "$SLURM_JOB_NODELIST"))
head=${nodes[0]}
head_ip=$(srun --nodes=1 --ntasks=1 -w "$head" hostname --ip-address | awk '{print $1}')
port=6379
gpus=${SLURM_GPUS_PER_NODE:-0}
cpus=${SLURM_CPUS_PER_TASK:-1}

srun --nodes=1 --ntasks=1 -w "$head" "$VENV/bin/ray" start --head --node-ip-address="$head_ip" \
  --port=$port --num-cpus="$cpus" --num-gpus="$gpus" --block &
sleep 15
for node in "${nodes[@]:1}"; do
  srun --nodes=1 --ntasks=1 -w "$node" "$VENV/bin/ray" start --address="$head_ip:$port" \
    --num-cpus="$cpus" --num-gpus="$gpus" --block &
done
sleep 15
"$VENV/bin/interp" sweep "$SWEEP" --out "$OUT" --backend ray --address "$head_ip:$port" \
  --cpus-per-run 4 --gpus-per-run "$([ "$gpus" -gt 0 ] && echo 1 || echo 0)" "$@"
