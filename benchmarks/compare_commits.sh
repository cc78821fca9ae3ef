#!/usr/bin/env bash
# Training throughput and translate latency of two commits, each with its own benchmark
# scripts, run alternately (ROUNDS times) with the current Python, so a change that should not
# cost speed (a refactor) is checked on the same machine at the same time. Run it on a quiet
# machine: nothing else on the cores.
#
#   benchmarks/compare_commits.sh BEFORE AFTER [OUT_DIR] [ROUNDS] [all|latency]
#   e.g. benchmarks/compare_commits.sh d1dfe70 5d546c1 runs/bench_refactor 2
set -euo pipefail
before=$1 after=$2 out=${3:-runs/compare_commits} rounds=${4:-2} what=${5:-all}
root=$(git rev-parse --show-toplevel)
mkdir -p "$out"
out=$(cd "$out" && pwd)
trees=$(mktemp -d)
trap 'for c in "$before" "$after"; do git -C "$root" worktree remove --force "$trees/$c" 2>/dev/null || true; done; rm -rf "$trees"' EXIT
for c in "$before" "$after"; do
  git -C "$root" worktree add --detach "$trees/$c" "$c" >/dev/null
  # translate_latency.py of commits between 7e0861c and its fix unpacks the old 4-value edit()
  sed -i 's/_, delta, _, _ = tr.edit(crop, \["happy"\], 1.0)/_, delta = tr.edit(crop, ["happy"], 1.0)[:2]/' \
    "$trees/$c/benchmarks/translate_latency.py"
done
for r in $(seq 1 "$rounds"); do
  for c in "$before" "$after"; do
    if [ "$what" = all ]; then
      (cd "$trees/$c" && PYTHONPATH="$trees/$c/src" python benchmarks/train_throughput.py \
        --steps 30 > "$out/train_${c}_$r.json")
    fi
    (cd "$trees/$c" && PYTHONPATH="$trees/$c/src" python benchmarks/translate_latency.py --threads 1 \
      --reps 30 > "$out/latency_${c}_$r.json")
    echo "round $r: $c done"
  done
done
echo "results in $out"
