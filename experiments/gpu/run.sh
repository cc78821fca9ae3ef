#!/usr/bin/env bash
# One command on a lent GPU: install, train with checkpoints under $OUT, copy what comes back.
# Prepare here (once):   echo /gpu_data/ >> .git/info/exclude
#                        python experiments/gpu/pack_data.py pack ../shared/data/fer2013/fer2013.csv.gz gpu_data/train.xz
#                        cp -r runs/clf_loss gpu_data/   # the frozen classifier of --expr-classifier
# Run there (device tool, carry gpu_data):  MINUTES=8 bash experiments/gpu/run.sh
# Then evaluate here on the CPU: ccyclegan evaluate --checkpoint <files_at>/generator.safetensors ...
# Any `ccyclegan train` flags can be appended: bash experiments/gpu/run.sh --lambda-expr 2
set -euo pipefail
OUT=${OUT:-runs/gpu}
MINUTES=${MINUTES:-8}
DATA=${DATA:-gpu_data/train.xz}
mkdir -p "$OUT"
python3 -m pip install -q --no-deps -e . 2>&1 | tail -1 || true
python3 -c "import torch, ccyclegan; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
csv=/tmp/fer2013_train.csv
[ -f "$csv" ] || python3 experiments/gpu/pack_data.py unpack "$DATA" "$csv"
clf=""
[ -d gpu_data/clf_loss ] && clf="--expr-classifier gpu_data/clf_loss"
# checkpoints every ~minute; the run stops itself after $MINUTES of training (--max-minutes)
PYTHONUNBUFFERED=1 python3 -m ccyclegan train --data "$csv" --out /tmp/run --epochs 100000 \
  --max-minutes "$MINUTES" --device "${DEVICE:-cuda}" --precision auto --ema-decay 0.999 --lr 5e-4 \
  --ckpt-every 2000 --sample-every 5000 --log-every 500 --no-progress $clf "$@" \
  2>&1 | tee "$OUT/train.log"
cp /tmp/run/generator.safetensors /tmp/run/config.json /tmp/run/metrics.csv "$OUT"/
cp /tmp/run/samples/final.png "$OUT"/ 2>/dev/null || true
ls -la "$OUT"
