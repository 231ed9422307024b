#!/usr/bin/env bash
# The prepared end-to-end GPU run (issue 22): the first real run's every command on one CUDA machine,
# under 6 minutes, nothing downloaded. Random-weight models in the exact SD1.5 / CLIP ViT-L/14 shapes:
#   world (16 images per emotion at 512 px) -> caption (oracle) -> filter -> cache at 512 px with image
#   tokens -> train 200 cached steps in bf16 with gradient checkpointing, SIGKILLed once after a
#   checkpoint and resumed -> generate 64 images (8 per emotion, two processes when two GPUs are there)
#   -> evaluate -> export -> a reward head -> tune the run (20 steps) -> export the tuned run.
# Prints samples/s and peak memory of training, each step's seconds, and every step that fails (the run
# goes on after a failure). Output: benchmarks/results/gpu/e2e/ (commit it). Usage: bash benchmarks/gpu_e2e.sh
# A CPU smoke run of the same script: SHAPE=pocket RES=64 STEPS=6 IMAGES=1 TUNE_STEPS=2 bash benchmarks/gpu_e2e.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-benchmarks/results/gpu/e2e}
WORK=${WORK:-/tmp/coemogen-e2e}
MODELS=${MODELS:-/tmp/coemogen-sd15-random}
SHAPE=${SHAPE:-sd15}
RES=${RES:-512}
STEPS=${STEPS:-200}
IMAGES=${IMAGES:-8}
TUNE_STEPS=${TUNE_STEPS:-20}
PY=${PY:-python}
CLI="$PY -m coemogen.cli"
rm -rf "$WORK" && mkdir -p "$WORK" "$OUT"
LOG="$OUT/e2e.md"
start=$(date +%s)
failed=()
{
  echo "# End-to-end GPU run, $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, diffusers, transformers, accelerate; print('torch', torch.__version__, '| diffusers', diffusers.__version__, '| transformers', transformers.__version__, '| accelerate', accelerate.__version__, '| cuda', torch.cuda.is_available())"
} | tee "$LOG"

run() {  # $1: name, $2: seconds allowed, then the command
  local name=$1 limit=$2 t0
  shift 2
  t0=$(date +%s)
  if timeout "$limit" "$@" >"$WORK/$name.log" 2>&1; then
    echo "- $name: ok in $(($(date +%s) - t0)) s" | tee -a "$LOG"
  else
    echo "- $name: FAILED (exit $?) after $(($(date +%s) - t0)) s; last lines:" | tee -a "$LOG"
    tail -n 15 "$WORK/$name.log" | sed 's/^/    /' | tee -a "$LOG"
    failed+=("$name")
  fi
}

if [ "$SHAPE" = sd15 ]; then
  run models 240 $PY -c "from coemogen.testing import build_sd15_shaped_models as b; b('$MODELS')"
  SD=$MODELS/sd CLIP=$MODELS/clip
else
  SD=coemogen:pocket-sd CLIP=coemogen:pocket-clip
fi
BASE=(--pretrained_model_name_or_path "$SD" --clip_model_name_or_path "$CLIP")
run world 120 $CLI world build --images-per-emotion 16 --size "$RES" --out "$WORK/world"
run caption 60 $CLI caption --dataset "$WORK/world" --captioner oracle --split train --out "$WORK/captions.jsonl"
run filter 120 $CLI filter --captions "$WORK/captions.jsonl" --out "$WORK/manifest.jsonl" --clip_model_name_or_path "$CLIP"
run cache 240 $CLI cache --manifest "$WORK/manifest.jsonl" --out "$WORK/cache" --resolution "$RES" \
  --cache_image_tokens "${BASE[@]}"

TRAIN=($CLI train --manifest "$WORK/manifest.jsonl" --out "$WORK/run" --cache "$WORK/cache" --center_crop
  "${BASE[@]}" --resolution "$RES" --max_train_steps "$STEPS" --train_batch_size 8 --mixed_precision bf16
  --gradient_checkpointing --checkpointing_steps $((STEPS / 4)) --lr_scheduler cosine --lr_warmup_steps 10
  --max_grad_norm 1.0 --validation_steps 0 --report_to tensorboard --resume_from_checkpoint latest)
# Killed once: SIGKILL as soon as the second checkpoint is complete, then resumed with the same command.
t0=$(date +%s)
"${TRAIN[@]}" >"$WORK/train-killed.log" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null && [ ! -d "$WORK/run/checkpoint-$((STEPS / 2))" ]; do sleep 0.5; done
kill -9 "$pid" 2>/dev/null && echo "- train: SIGKILLed at $(ls -d "$WORK"/run/checkpoint-* | tail -n 1)" | tee -a "$LOG"
wait "$pid" 2>/dev/null
run train-resumed 420 "${TRAIN[@]}"
grep -h "samples/s" "$WORK/train-killed.log" "$WORK/train-resumed.log" | sed 's/^/    /' | tee -a "$LOG"
echo "- train (both parts): $(($(date +%s) - t0)) s" | tee -a "$LOG"

GPUS=$($PY -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
GEN=(generate --model "$WORK/run" --emotion all --num-images "$IMAGES" --out "$WORK/generated" --steps 20)
if [ "${GPUS:-0}" -ge 2 ]; then
  run generate 240 $PY -m accelerate.commands.launch --num_processes 2 --multi_gpu -m coemogen.cli "${GEN[@]}"
else
  run generate 240 $CLI "${GEN[@]}"
fi
run evaluate 180 $CLI evaluate --images "$WORK/generated" --reference "$WORK/world" --out "$WORK/report" --num-pairs 50
run export 120 $CLI export --model "$WORK/run" --out "$WORK/export" --emotions awe "fear:0.7,sadness:0.3"
# Reward tuning (issue 33): a reward head on the world's CLIP features, then `coemogen tune` of the
# trained run (K = 1 of 25 DDIM steps, both guards, bf16, checkpointing on), and the tuned run exported.
run reward-head 120 $CLI emotion-head train --dataset "$WORK/world" --out "$WORK/reward-head" \
  --clip_model_name_or_path "$CLIP" --steps 100
run tune 300 $CLI tune --model "$WORK/run" --manifest "$WORK/manifest.jsonl" --out "$WORK/tuned" \
  --reward_model "$WORK/reward-head" --max_train_steps "$TUNE_STEPS" --train_batch_size 4 --num_inference_steps 25 \
  --mixed_precision bf16 --gradient_checkpointing --checkpointing_steps $((TUNE_STEPS / 2)) --validation_steps 0 \
  --report_to tensorboard
grep -h "samples/s" "$WORK/tune.log" | sed 's/^/    /' | tee -a "$LOG"
run export-tuned 120 $CLI export --model "$WORK/tuned" --out "$WORK/export-tuned" --emotions awe

cp "$WORK/report/metrics.md" "$OUT/metrics.md" 2>/dev/null
echo "total $(($(date +%s) - start)) s; failed: ${failed[*]:-none}" | tee -a "$LOG"
[ ${#failed[@]} -eq 0 ]
