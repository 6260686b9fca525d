#!/usr/bin/env bash
# The one prepared script for a session that is lent a GPU (<= 10 minutes in all). Run from the
# repository root:   bash benchmarks/gpu_session.sh            (on the GPU machine)
#                    bash benchmarks/gpu_session.sh --dry-run  (anywhere: CPU, seconds, writes to a temp dir)
# It measures (1) training throughput of ResNet-50, ResNet-18 (32x32 inputs) and the small CNN at batch
# 16 and 512, ours against the authors-shaped baseline (benchmarks/bench_nn.py), then (2) runs the
# whole Figure 5 protocol of configs/figure5_gpu_fast.yaml on Fashion-MNIST. Outputs, each with
# provenance: results/gpu_session/nn_cuda.json (+ benchmarks/results/nn_cuda.json),
# results/section5/gpu_fast/results.json, results/gpu_session/*.log; copied under $OUT when set.
# Data: Fashion-MNIST's four .gz files in data/fashion-mnist/ (carry that path; fill it first with
#   mkdir -p data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/).
# Python: $PYTHON, else .venv/bin/python if present, else python3; it needs torch with CUDA.
set -euo pipefail
DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; fi
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi; fi
export SDLIB_DATA=${SDLIB_DATA:-/tmp/sdlib-data}
FMNIST=data/fashion-mnist
if [[ $DRY == 1 ]]; then
  DEV=cpu; RES=$(mktemp -d /tmp/gpu_session_dry.XXXX); BENCH_ARGS="--quick"; RUN_ARGS="--dry-run"
  CKPT=$RES/ckpt
  [[ -d $FMNIST ]] || FMNIST=/usr/share/datasets/fashion-mnist
else
  DEV=cuda; RES=results; BENCH_ARGS="--iters 40 --warmup 5 --batch-sizes 16 512 --archs resnet50 resnet18 small_cnn"
  RUN_ARGS=""; CKPT=/tmp/sdlib-gpu-fast-ckpt
fi
mkdir -p "$RES/gpu_session" "$RES/section5"
LOG=$RES/gpu_session
START=$(date +%s)
echo "== device check ($DEV)" | tee "$LOG/session.log"
"$PY" - "$DEV" <<'PYEOF' 2>&1 | tee -a "$LOG/session.log"
import sys, torch
dev = sys.argv[1]
print("torch", torch.__version__, "cuda available:", torch.cuda.is_available())
if dev == "cuda":
    assert torch.cuda.is_available(), "no CUDA GPU visible to torch"
    print(torch.cuda.get_device_name(0))
PYEOF
if [[ $DEV == cuda ]]; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$LOG/session.log" || true; fi
[[ -f $FMNIST/train-images-idx3-ubyte.gz ]] || { echo "missing Fashion-MNIST .gz files in $FMNIST" | tee -a "$LOG/session.log"; exit 2; }

echo "== (1) throughput benchmark" | tee -a "$LOG/session.log"
timeout 270 "$PY" benchmarks/bench_nn.py --device "$DEV" $BENCH_ARGS --out "$LOG/nn_$DEV.json" 2>&1 \
  | tee "$LOG/bench.log" || echo "benchmark exited with $? (partial results kept)" | tee -a "$LOG/session.log"
if [[ $DRY == 0 && -f $LOG/nn_$DEV.json ]]; then mkdir -p benchmarks/results && cp "$LOG/nn_$DEV.json" benchmarks/results/; fi

echo "== (2) Figure 5 protocol, configs/figure5_gpu_fast.yaml" | tee -a "$LOG/session.log"
timeout 300 "$PY" -m sdlib.nn run -f configs/figure5_gpu_fast.yaml -o "$RES/section5/gpu_fast" \
  --checkpoint-dir "$CKPT" -p data_dir "$FMNIST" -p device "$DEV" $RUN_ARGS 2>&1 \
  | tee "$LOG/figure5_gpu_fast.log" || echo "figure5 run exited with $?" | tee -a "$LOG/session.log"
echo "== done in $(( $(date +%s) - START )) s; outputs under $RES" | tee -a "$LOG/session.log"
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT/results/section5" && cp -r "$LOG" "$OUT/results/" && cp -r "$RES/section5/gpu_fast" "$OUT/results/section5/" || true
fi
