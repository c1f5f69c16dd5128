#!/usr/bin/env bash
# Run a mer-train command over every GPU of a SLURM allocation, on a Ray cluster started
# inside it (Ray's own SLURM recipe: a head on the first node, one worker per other node,
# all started with srun; the command then runs on the head with --ray-address).
#
# Usage (edit the #SBATCH lines for your cluster; the run folder must be on a filesystem
# every node sees, e.g. your home or project space):
#   sbatch scripts/slurm_ray.sh mer-train table1 --cache casme2.h5 --cache samm.h5 \
#       --weights-dir weights/ --out runs/table1 --executor ray --unit-gpus 1
# Interrupted (time limit, preemption)? Submit the same command again: finished units are
# kept and only the rest run.
#
#SBATCH --job-name=mer-di
#SBATCH --nodes=2
#SBATCH --exclusive
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-task=4
#SBATCH --cpus-per-task=16
#SBATCH --time=24:00:00
#SBATCH --output=mer-di-%j.out
set -euo pipefail

# the environment that has mer-di installed (pip install "mer-di[ray]"): a venv on the
# shared filesystem, or your cluster's module/conda line instead
source "${MER_DI_VENV:-$HOME/mer-di/.venv}/bin/activate"

if [ "$#" -eq 0 ]; then
  echo "usage: sbatch scripts/slurm_ray.sh mer-train ... --executor ray" >&2
  exit 2
fi

nodes=$(scontrol show hostnames "$SLURM_JOB_NODELIST")
read -r -a node_list <<< "$(echo $nodes)"
head_node=${node_list[0]}
head_ip=$(srun --nodes=1 --ntasks=1 -w "$head_node" hostname --ip-address | awk '{print $1}')
port=${RAY_PORT:-6379}
address="$head_ip:$port"
cpus=${SLURM_CPUS_PER_TASK:-1}
gpus=${SLURM_GPUS_PER_TASK:-0}

echo "Ray head on $head_node ($address); ${#node_list[@]} nodes, $cpus CPUs and $gpus GPUs each"
srun --nodes=1 --ntasks=1 -w "$head_node" \
  ray start --head --node-ip-address="$head_ip" --port="$port" \
  --num-cpus="$cpus" --num-gpus="$gpus" --include-dashboard=false --block &
sleep "${RAY_WAIT_S:-20}"  # the head must be up before a worker tries to join

for node in "${node_list[@]:1}"; do
  srun --nodes=1 --ntasks=1 -w "$node" \
    ray start --address="$address" --num-cpus="$cpus" --num-gpus="$gpus" --block &
done
sleep "${RAY_WAIT_S:-20}"

# the command itself, on the head node, joining the cluster started above (so do not give
# it --ray-address yourself)
status=0
"$@" --ray-address "$address" || status=$?
ray stop || true
exit $status
