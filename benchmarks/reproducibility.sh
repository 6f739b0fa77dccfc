#!/usr/bin/env bash
# Same command, same seed: do the numbers repeat? And what changes them (threads, compile)?
# README "What a run checks, and what changes its numbers". Tiny local datasets, 400 updates per run.
#     bash benchmarks/reproducibility.sh [out_dir]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-/tmp/rgm-reproducibility}
mkdir -p "$B"
export MINARI_DATASETS_PATH=$B/minari TORCHRL_RGM_CACHE=$B/cache
python -c "
from tests.data.conftest import build_tiny
build_tiny('rgm/hopper/medium-replay-v0', steps=1500, policy='actor', max_steps=80)
build_tiny('rgm/hopper/expert-v0', steps=300, seed=3, policy='actor', max_steps=150)
" > /dev/null 2>&1 || true  # already built on a second call
T="budget.discriminator_steps=50 algo.batch_size=128 budget.updates=400 eval.every=200 checkpoint_every=200 eval.episodes=3"
for name in t2-compile-a t2-compile-b t1-compile t2-eager-a t2-eager-b; do
  case $name in t1-*) export OMP_NUM_THREADS=1;; *) unset OMP_NUM_THREADS;; esac
  c=auto; case $name in *eager*) c=false;; esac
  rm -rf "${B:?}/$name"
  python recipes/rgm_mujoco.py $T compile=$c run_dir="$B/$name" > "$B/$name.log" 2>&1
  python -c "import json; s=json.load(open('$B/$name/summary.json')); print('$name', s['final_normalized_score'], s['best_normalized_score'])"
done
