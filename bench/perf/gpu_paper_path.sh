#!/usr/bin/env bash
# The paper profile's GPU path, for real, on one GPU with no model hub: `bash bench/perf/gpu_paper_path.sh OUTDIR`.
#  1. Step time and peak memory of DPO vs CausalDPO at Llama-3.1-8B's published shape (random weights built from
#     its config), LoRA r 8 on every linear layer, bf16, gradient checkpointing, 200-token prompts.
#  2. The whole `paper` profile pipeline (SFT -> DPO / CausalDPO -> grounding ranking) on the embedded ML-100K with a
#     Llama-3.2-1B-shaped backbone (2048 wide, 16 layers, GQA 32/8) and the word-level tokenizer, short epochs.
# Each stage logs to OUTDIR; records land in OUTDIR/results.
set -uo pipefail
out=${1:-runs/gpu_check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, transformers, trl, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__)" | tee -a "$out/gpu.txt"

[ -n "${SKIP_STEPS:-}" ] || timeout "${STEP_TIMEOUT:-240}" python3 -m bench.perf.causal_overhead --arch llama-3.1-8b --bf16 --lora \
    --gradient-checkpointing --pairs "${PAIRS:-256}" --batch-size 16 --prompt-len 200 --title-len 12 --repeats 2 \
    2>&1 | grep -v -E "it/s\]|Warning|warn" | tee "$out/steps_llama8b.log"

timeout "${PIPELINE_TIMEOUT:-300}" python3 -m bench run --profile paper --dataset ml-100k --shift temporal \
    --methods sft,dpo,causaldpo \
    --set backbone.name=tiny-llama --set backbone.hidden_size=2048 --set backbone.num_layers=16 \
    --set backbone.num_heads=32 --set backbone.num_kv_heads=8 --set backbone.intermediate_size=8192 \
    --set data.max_train_samples=2048 --set data.max_eval_samples=256 --set sft.epochs=1 --set preference.epochs=1 \
    --set preference.max_pairs=512 --set results_dir="$out/results" --set cache_dir=/tmp/bench_cache \
    2>&1 | grep -v -E "it/s\]|Warning|warn" | tee "$out/pipeline_llama1b.log"
for f in "$out"/results/*/*/*.json; do [ -e "$f" ] && cp "$f" "$out/record-$(basename "$f")"; done
