#!/usr/bin/env bash
# Start (or resume) the organism's training on the lent GPU in the background; the command returns at once.
# Usage on the device machine, from the repo root, with the wheels carried in .whl:
#   bash experiments/train/organism_gpu.sh RUN_DIR [key=value ...]
set -u
RUN=${1:-/tmp/run}; shift || true
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 WANDB_MODE=disabled
python3 -c "import diffusers, pydantic, torch; from interp.training import organism; print('diffusers', diffusers.__version__, 'torch', torch.__version__, torch.cuda.get_device_name())" || exit 1
mkdir -p "$RUN"
setsid nohup python3 -m interp.training.organism "${CONFIG:-experiments/train/organism.yaml}" out="$RUN/organism" "$@" > "$RUN/train.out" 2>&1 < /dev/null &
echo "started pid $!"
