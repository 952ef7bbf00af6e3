#!/usr/bin/env bash
# The own-data loop on a CPU (docs/datasets.md, issue 27): a synthetic robot bag of a rig and a
# scene kind the bundled demo model was not trained on (a courtyard, another field of view and
# camera height), converted with `mickey-ros dataset`, the demo model fine-tuned on it (with
# rehearsal of its own rig), both models compared on the bag's held-out block with one solver
# seed, and the fine-tuned model replayed on `mickey-ros demo`'s drive (does it still know it?).
#   bash scripts/own_data_demo.sh [WORKDIR] [STEPS] [DEPTH]
# STEPS (default 1200, the config's full run, as in docs/datasets.md) fine-tune steps.
# DEPTH=depth writes the bag's depth topic, converts it (--depth-topic) and fine-tunes with
# config/train/finetune_demo_own_data_rgbd.yaml (the depth PNGs supervise, half of every batch
# rehearses the demo rig): the RGB-D row of docs/datasets.md.
set -euo pipefail
WORK=${1:-/tmp/own_data_demo}
STEPS=${2:-1200}
DEPTH=${3:-}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1
mkdir -p "$WORK"
CONFIG=config/train/finetune_demo_own_data.yaml
CONVERT=()
BAG_DEPTH=()
if [ "$DEPTH" = depth ]; then
    CONVERT=(--depth-topic /camera/depth/image_raw)
    BAG_DEPTH=(--depth)
    CONFIG=config/train/finetune_demo_own_data_rgbd.yaml
fi
[ -d "$WORK/bag" ] || "$PY" -m mickey_ros.cli.main synth rosbag --out "$WORK/bag" --seconds 150 \
    --rate 5 --render-size 320x240 --scene courtyard --seed 27 "${BAG_DEPTH[@]}"
[ -d "$WORK/ds" ] || "$PY" -m mickey_ros.cli.main dataset "$WORK/bag" \
    --out "$WORK/ds" --fixed-frame odom "${CONVERT[@]}" --no-progress
"$PY" -m mickey_ros.train.main --config "$CONFIG" \
    --init mickey_ros/data/demo_model.ckpt --data "$WORK/ds" --out "$WORK/run" --threads 1 \
    --max-steps "$STEPS" --no-progress
"$PY" scripts/before_after.py --data "$WORK/ds" --before demo \
    --after "$WORK/run/checkpoints/last.ckpt" --out "$WORK/before_after"
# the demo drive: `mickey-ros demo` renders its bag and replays it with the bundled model; the
# same bag replayed with the fine-tuned checkpoint
"$PY" -m mickey_ros.cli.main demo --workdir "$WORK/demo_drive" --no-progress
"$PY" -m mickey_ros.cli.main replay "$WORK"/demo_drive/robot-seed0-8s-5hz-320x240-mcap \
    --camera /camera/image_raw --reference-topic /reference/image \
    --checkpoint "$WORK/run/checkpoints/last.ckpt" --ground-truth-tf --world odom \
    --out "$WORK/demo_drive/finetuned-replay" --overwrite --no-progress
