#!/usr/bin/env bash
# The prepared GPU check (issue 11): one CUDA machine, under 12 minutes (SDXL=0: under 8), nothing downloaded.
#
# Random-weight models in the exact SD1.5 / CLIP ViT-L/14 shapes; at 512 px in bf16:
#   1. the training-step table (benchmarks/train_step.py) at batch 1/4/8: CoEmoGen uncached and cached,
#      the diffusers LoRA recipe (peft rank 8), and the U-Net alone with HiLoRA vs a rank-8 LoRA;
#   2. batch 8 with gradient checkpointing, then also with --compile;
#   3. generation images/s: CoEmoGenPipeline vs a plain StableDiffusionPipeline (20 steps, batch 8);
#   3b. one reward-tuning step (`coemogen tune`, K = 1 of 25 steps, batch 4) against one training step;
#   4. SDXL at 1024 px: the U-Net with HiLoRA vs a peft rank-8 LoRA (see below).
# Output: benchmarks/results/gpu/ (commit it). Usage: bash benchmarks/gpu_check.sh
# A CPU smoke run of the same script: SHAPE=pocket RES=64 BATCHES="2" STEPS=2 bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TQDM_DISABLE=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-benchmarks/results/gpu}
MODELS=${MODELS:-/tmp/coemogen-sd15-random}
SHAPE=${SHAPE:-sd15}
RES=${RES:-512}
BATCHES=${BATCHES:-1 4 8}
BIG=${BATCHES##* }
STEPS=${STEPS:-20}
PY=${PY:-python}
mkdir -p "$OUT"
start=$(date +%s)
{
  echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, diffusers, transformers, peft; print('torch', torch.__version__, '| diffusers', diffusers.__version__, '| transformers', transformers.__version__, '| peft', peft.__version__, '| cuda', torch.cuda.is_available())"
} | tee "$OUT/environment.txt"

step() {  # $1: seconds allowed, $2: results name, then train_step.py flags
  local limit=$1 name=$2
  shift 2
  timeout "$limit" $PY benchmarks/train_step.py --shape "$SHAPE" --models "$MODELS" --resolution "$RES" \
    --mixed_precision bf16 --repeats 5 --warmup 2 --out "$OUT/$name.json" "$@" 2>&1 | tee "$OUT/$name.md"
  echo "== $name done at +$(($(date +%s) - start)) s"
}

# Build the random models once (about a minute), outside the timed children.
if [ "$SHAPE" = sd15 ]; then
  $PY -c "from coemogen.testing import build_sd15_shaped_models as b; b('$MODELS')" || exit 1
fi
step 180 train_step_bf16 --batch $BATCHES --variants coemogen coemogen_cached lora_recipe
step 60 unet_only_bf16 --batch "$BIG" --variants hilora_unet lora_unet
step 60 train_step_bf16_gc --batch "$BIG" --gradient_checkpointing --variants coemogen_cached lora_recipe
step 120 train_step_bf16_gc_compile --batch "$BIG" --gradient_checkpointing --compile --warmup 3 \
  --variants coemogen_cached lora_recipe
if [ "$SHAPE" = sd15 ]; then
  timeout 90 $PY benchmarks/generation_overhead.py --shape sd15 --models "$MODELS" --dtype bfloat16 \
    --images "$BIG" --steps "$STEPS" --repeats 3 2>&1 | tee "$OUT/generation.md"
fi
# 3b. Reward tuning (issue 33): one `coemogen tune` step (K = 1 of 25 DDIM steps, batch 4, both guards)
#     against one training step, time and peak memory, in bf16 with gradient checkpointing.
timeout 240 $PY benchmarks/tune_step.py --shape "$SHAPE" --models "$MODELS" --resolution "$RES" --batch 4 \
  --num_inference_steps 25 --mixed_precision bf16 --gradient_checkpointing --repeats 3 --warmup 1 \
  --out "$OUT/tune_step_bf16.json" 2>&1 | tee "$OUT/tune_step_bf16.md"
echo "== tune_step_bf16 done at +$(($(date +%s) - start)) s"
# 4. SDXL at 1024 px (random weights from the published SDXL base configs, ~15 GB written once; SDXL=0 skips):
#    the U-Net alone with HiLoRA vs a peft rank-8 LoRA on the same frozen weights, batch 1 and 4.
if [ "$SHAPE" = sd15 ] && [ "${SDXL:-1}" = 1 ]; then
  SDXL_MODELS=${SDXL_MODELS:-/tmp/coemogen-sdxl-random}
  $PY -c "from coemogen.testing import build_sdxl_shaped_models as b; b('$SDXL_MODELS')" || exit 1
  echo "== SDXL models built at +$(($(date +%s) - start)) s"
  timeout 240 $PY benchmarks/train_step.py --shape sdxl --models "$SDXL_MODELS" --resolution 1024 \
    --mixed_precision bf16 --repeats 5 --warmup 2 --batch 1 4 --variants hilora_unet lora_unet \
    --out "$OUT/sdxl_unet_only_bf16.json" 2>&1 | tee "$OUT/sdxl_unet_only_bf16.md"
  echo "== sdxl_unet_only_bf16 done at +$(($(date +%s) - start)) s"
fi
echo "total $(($(date +%s) - start)) s" | tee -a "$OUT/environment.txt"
