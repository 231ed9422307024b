#!/usr/bin/env bash
# Rebuild every shipped synthetic-world artefact under src/coemogen/world/assets (2 idle CPU cores:
# pocket models 54 min, judges a few minutes, the CoEmoGen run about 20 min).
# 1. pocket CLIP + pocket SD from the neutral corpus; 2. the world (seed 0); 3. independent judges
# (trained on a world with seed 100); 4. the shipped CoEmoGen run (oracle captions -> CLIP filter -> train).
set -euo pipefail
export HF_HUB_OFFLINE=1
ASSETS=src/coemogen/world/assets
WORK=${WORK:-/tmp/coemogen-assets}
mkdir -p "$WORK"
coemogen world pocket --out "$ASSETS" --seed 0
coemogen world build --out "$WORK/world" --images-per-emotion 500 --seed 0
coemogen world judges --out "$ASSETS/evaluators" --test-world "$WORK/world" --seed 100
coemogen caption --dataset "$WORK/world" --split train --captioner oracle:0.2 --out "$WORK/captions.jsonl"
coemogen filter --captions "$WORK/captions.jsonl" --out "$WORK/manifest.jsonl" --drop 0.2
coemogen train --manifest "$WORK/manifest.jsonl" --out "$WORK/run" --max_train_steps 6000 \
  --train_batch_size 8 --seed 0 --checkpointing_steps 1000 --checkpoints_total_limit 1 --validation_steps 2000
# Sample at 0.4 of the fitted spread by default: the fidelity/diversity choice measured in
# docs/world-run/temperature.md (`python scripts/measure_world_run.py --temperatures ...`).
coemogen clusters --model "$WORK/run" --manifest "$WORK/manifest.jsonl" --temperature 0.4
mkdir -p "$ASSETS/world-run"
cp "$WORK"/run/{config.json,taxonomy.json,mapper.safetensors,perception_encoder.safetensors,hilora.safetensors,clusters.safetensors,final_grid.png} "$ASSETS/world-run/"
