#!/usr/bin/env bash
# Runs the same training command on every worker of a TPU VM slice (e.g. v5p-128, v5litepod-64).
# jax.distributed finds the coordinator, process count and index from the TPU environment.
#
#   launch/tpu_vm_pod.sh TPU_NAME ZONE WORKDIR CONFIG [--config.a.b=v ...]
#   launch/tpu_vm_pod.sh my-v5p us-east5-a gs://bucket/runs/avdit_b configs/quickstart.py --config.avdit.model.variant=B
#
# The repository is copied to every worker and installed with the [tpu] extra first.
set -euo pipefail
if [ $# -lt 4 ]; then
  sed -n '2,9p' "$0"; exit 2
fi
TPU_NAME=$1 ZONE=$2 WORKDIR=$3 CONFIG=$4
shift 4
REPO_DIR=$(cd "$(dirname "$0")/.." && pwd)

gcloud compute tpus tpu-vm scp --recurse --zone="$ZONE" --worker=all "$REPO_DIR" "$TPU_NAME":~/avdit_jax
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="
  set -e
  cd ~/avdit_jax
  python3 -m venv .venv && . .venv/bin/activate
  pip install -q -e '.[tpu]'
  python -m avdit_jax.main --multiprocess --config=$CONFIG --workdir=$WORKDIR $*
"
