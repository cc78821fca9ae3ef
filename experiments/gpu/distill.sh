#!/usr/bin/env bash
# One command on a lent GPU: the photo-ready generator study (issue 30). Trains, side by side on
# one GPU, one plain generator per candidate, each for the same wall clock:
#   warp_distill     --output warp, learns the bundled pair's edits (--teacher), mask weight 0.1
#   warp_distill_m1  the same, mask weight 1 (paints less, moves more)
#   att_distill      --output attention (no field), learns the pair's edits
#   warp_gan         --output warp, no teacher: the pair's own recipe (frozen classifier loss)
# and first the frozen loss classifier of that recipe (runs/clf_loss's command).
# Prepare here (once):   echo /gpu_data/ >> .git/info/exclude
#                        python experiments/gpu/pack_data.py pack ../shared/data/fer2013/fer2013.csv.gz gpu_data/train.xz
# Run there (device tool, carry gpu_data):  SECONDS_TRAIN=360 bash experiments/gpu/distill.sh
# What comes back: one .tar.gz per run (fp16 generator, config, metrics, last samples), logs.
# Try it here first: DEVICE=cpu SECONDS_TRAIN=40 CLF_EPOCHS=1 OUT=/tmp/gpu_try bash experiments/gpu/distill.sh
set -uo pipefail
OUT=${OUT:-runs/gpu}
DEVICE=${DEVICE:-cuda}
SECONDS_TRAIN=${SECONDS_TRAIN:-360}   # every run stops this many seconds after the start
CLF_EPOCHS=${CLF_EPOCHS:-20}
DATA=${DATA:-gpu_data/train.xz}
TEACHER=src/ccyclegan/weights/ccyclegan_fer2013.safetensors
WORK=${WORK:-/tmp/ccy}
mkdir -p "$OUT" "$WORK"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}  # the package from this tree, no install
python3 -c "import torch, ccyclegan; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
csv=$WORK/fer2013_train.csv
[ -f "$csv" ] || python3 experiments/gpu/pack_data.py unpack "$DATA" "$csv"
start=$(date +%s)
deadline=$((start + SECONDS_TRAIN))

common=(--data "$csv" --epochs 100000 --device "$DEVICE" --precision auto --lr 5e-4
        --ema-decay 0.999 --label-mode norm --ckpt-every 1000 --sample-every 100000
        --log-every 100 --no-progress --threads 3)
train() {  # name, flags...: train until the shared deadline (SIGTERM saves and exits)
  local name=$1; shift
  local left=$((deadline - $(date +%s)))
  [ "$left" -gt 20 ] || { echo "$name: no time left"; return; }
  PYTHONUNBUFFERED=1 timeout -s TERM "$left" python3 -m ccyclegan train "${common[@]}" \
    --out "$WORK/$name" "$@" >"$OUT/$name.log" 2>&1
  echo "$name: exit $? after $(( $(date +%s) - start )) s, $(tail -1 "$WORK/$name/metrics.csv" | cut -d, -f1) steps"
}
distill=(--teacher "$TEACHER" --lambda-distill 10)
train warp_distill --output warp "${distill[@]}" &
train warp_distill_m1 --output warp --lambda-mask 1 "${distill[@]}" &
train att_distill --output attention "${distill[@]}" &
(
  PYTHONUNBUFFERED=1 python3 -m ccyclegan train-classifier --data "$csv" --out "$WORK/clf_loss" \
    --width 32 --epochs "$CLF_EPOCHS" --seed 1 --device "$DEVICE" --precision auto --threads 3 \
    >"$OUT/clf_loss.log" 2>&1
  echo "clf_loss: exit $? after $(( $(date +%s) - start )) s"
  train warp_gan --output warp --expr-classifier "$WORK/clf_loss" --lambda-expr 1 \
    --expr-confidence 0.75
) &
wait
for run in warp_distill warp_distill_m1 att_distill warp_gan; do
  d=$WORK/$run
  [ -f "$d/generator.safetensors" ] || { echo "$run: no generator"; continue; }
  python3 -m ccyclegan export --checkpoint "$d" --format safetensors -o "$d/release.safetensors" \
    >/dev/null 2>&1 || echo "$run: export failed"
  tar -czf "$OUT/$run.tar.gz" -C "$d" $(cd "$d" && ls release.safetensors config.json \
    metrics.csv checkpoint.json 2>/dev/null)
done
[ -d "$WORK/clf_loss" ] && tar -czf "$OUT/clf_loss.tar.gz" -C "$WORK" \
  clf_loss/classifier.safetensors clf_loss/classifier.json clf_loss/metrics.csv
cat "$OUT"/*.log | grep -E "^(done|ccyclegan|train-classifier|epoch)" | tail -20 >"$OUT/summary.txt"
ls -la "$OUT"
