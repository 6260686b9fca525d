#!/usr/bin/env bash
# The one prepared script for a session that is lent a GPU: at most 8 minutes in all (a deadline
# caps every part). Run from the repository root:
#     bash benchmarks/gpu_session.sh            (on the GPU machine; writes under $OUT, else results/gpu_session)
#     bash benchmarks/gpu_session.sh --dry-run  (anywhere: CPU, about a minute, writes to a temp dir)
# Parts, each written to disk as soon as it is measured (at most one folder deep under the output):
#   (1) cuda_checks.json: the CUDA-only paths of sdlib.nn on the GPU: bf16 autocast + channels_last
#       on a BatchNorm network (ResNet-18) through the task graph, torch.compile, fp32 vs bf16 scoring
#       of alpha-hat, TF32 off, whether two fp32 fits are bitwise equal on CUDA;       (<= 75 s)
#   (2) nn_cuda.json: training throughput, the library's own step against the authors-shaped
#       baseline (benchmarks/bench_nn.py; rewritten after every measurement);         (<= 150 s)
#   (3) gpu_fast/: configs/figure5_gpu_fast.yaml through the task graph on cuda (progress.json after
#       every fit, results.json at the end; resumable from /tmp/sdlib-gpu-fast-ckpt);  (<= 240 s)
#   session.log and one log per part.
# Data: Fashion-MNIST's four .gz files in data/fashion-mnist/ (carry that path; fill it first with
#   mkdir -p data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/).
# Python: $PYTHON, else .venv/bin/python if present, else python3; it needs torch with CUDA.
set -uo pipefail
DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; fi
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi; fi
export SDLIB_DATA=${SDLIB_DATA:-/tmp/sdlib-data}
START=$(date +%s)
TOTAL=470   # seconds; 10 s of slack under 8 minutes for copying back
FMNIST=data/fashion-mnist
if [[ $DRY == 1 ]]; then
  DEV=cpu; RES=$(mktemp -d /tmp/gpu_session_dry.XXXX); BENCH_ARGS=(--quick)
  CKPT=$(mktemp -d /tmp/sdlib-gpu-fast-dry.XXXX)
  [[ -d $FMNIST ]] || FMNIST=/usr/share/datasets/fashion-mnist
else
  DEV=cuda; RES=${OUT:-results/gpu_session}
  BENCH_ARGS=(--iters 30 --warmup 5 --batch-sizes 16 512 --archs resnet50 resnet18 small_cnn)
  CKPT=/tmp/sdlib-gpu-fast-ckpt
fi
mkdir -p "$RES"
LOG=$RES/session.log
say() { echo "$*" | tee -a "$LOG"; }
left() {  # seconds this part may take: its own cap, or what is left of the session's
  local cap=$1 rest=$(( TOTAL - ($(date +%s) - START) ))
  (( rest < cap )) && cap=$rest
  (( cap < 1 )) && cap=1
  echo "$cap"
}
say "== gpu_session on $DEV, outputs in $RES, started $(date -u +%FT%TZ)"
"$PY" - "$DEV" <<'PYEOF' 2>&1 | tee -a "$LOG"
import sys, torch
dev = sys.argv[1]
print("torch", torch.__version__, "cuda available:", torch.cuda.is_available())
if dev == "cuda":
    assert torch.cuda.is_available(), "no CUDA GPU visible to torch"
    print(torch.cuda.get_device_name(0))
PYEOF
if [[ $DEV == cuda ]]; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$LOG" || true; fi
[[ -f $FMNIST/train-images-idx3-ubyte.gz ]] || { say "missing Fashion-MNIST .gz files in $FMNIST"; exit 2; }

say "== (1) CUDA paths ($(left 75) s at most)"
CKCHECK=$(mktemp -d /tmp/sdlib-gpu-checks.XXXX)
timeout "$(left 75)" "$PY" - "$DEV" "$RES/cuda_checks.json" "$CKCHECK" <<'PYEOF' 2>&1 | tee "$RES/cuda_checks.log"
import sys, time, traceback
import torch
from sdlib.nn.config import ExperimentConfig
from sdlib.nn.data import load_data
from sdlib.nn.graph import train
from sdlib.nn.train import configure_precision, fit, predict_probs
from sdlib.nn.chains import estimate_alpha_hat
from sdlib.provenance import write_json_atomic

dev, out, ck = sys.argv[1], sys.argv[2], sys.argv[3]
checks = {"device": dev}

def check(name, fn):
    t0 = time.perf_counter()
    try:
        checks[name] = {"ok": True, **fn()}
    except Exception as e:  # noqa: BLE001 - record and go on to the next check
        checks[name] = {"ok": False, "error": repr(e)}
        traceback.print_exc()
    checks[name]["seconds"] = round(time.perf_counter() - t0, 2)
    print(name, checks[name], flush=True)
    write_json_atomic(out, checks)

small = dict(dataset="digits", n_train=256, n_val=128, n_test=128, device=dev, epochs=1, augment=True)

def tf32_off():
    configure_precision(torch.device(dev))
    return {"matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}

def resnet_graph():   # BatchNorm network, bf16 autocast, channels_last, device-side augmentation
    cfg = ExperimentConfig(arch="resnet18", amp="bf16", steps=2, alphas=[0.5], seeds=[0], **small)
    doc = train(cfg, ck + "/resnet18", progress=False)
    return {"records": len(doc["results"]["records"]), "val_acc": [r["val_acc"] for r in doc["results"]["records"]]}

def compiled():
    cfg = ExperimentConfig(arch="small_cnn", amp="bf16", compile=True, **small)
    d = load_data("digits", n_train=256, n_val=128, n_test=128).to(dev)
    r = fit(cfg, d, alpha=1.0, teacher=None, seed=1)
    return {"train_loss": r.train_loss, "fit_seconds": r.seconds}

def scoring():   # alpha-hat from fp32 vs bf16 validation probabilities of the same two models
    cfg = ExperimentConfig(arch="small_cnn", amp="bf16", epochs=3, **{k: v for k, v in small.items() if k != "epochs"})
    d = load_data("digits", n_train=256, n_val=128, n_test=128).to(dev)
    m1 = fit(cfg, d, alpha=1.0, teacher=None, seed=1).model
    m0 = fit(cfg, d, alpha=0.0, teacher=m1, seed=2).model
    yv = torch.nn.functional.one_hot(d.val.y.cpu(), 10).double().numpy()
    p = {amp: [predict_probs(m, d.val.x, d.spec, cfg, amp=amp).double().numpy() for m in (m1, m0)] for amp in (False, True)}
    a = {amp: estimate_alpha_hat(yv, *p[amp]) for amp in p}
    return {"alpha_hat_fp32": a[False], "alpha_hat_bf16": a[True], "abs_diff": abs(a[False] - a[True]),
            "max_prob_diff": float(abs(p[False][1] - p[True][1]).max())}

def fp32_repeat():   # bitwise equality of two identical fp32 fits (claimed on a CPU only)
    cfg = ExperimentConfig(arch="resnet18", amp="none", **small)
    d = load_data("digits", n_train=256, n_val=128, n_test=128).to(dev)
    a, b = (predict_probs(fit(cfg, d, alpha=1.0, teacher=None, seed=3).model, d.val.x, d.spec, cfg) for _ in range(2))
    return {"bitwise_equal": bool(torch.equal(a, b)), "max_abs_diff": float((a - b).abs().max())}

check("tf32_off", tf32_off)
check("resnet18_bf16_channels_last_graph", resnet_graph)
check("alpha_hat_scoring_fp32_vs_bf16", scoring)
check("fp32_repeat_resnet18", fp32_repeat)
check("compile_small_cnn", compiled)
PYEOF
say "   part (1) exit $? at $(( $(date +%s) - START )) s"

say "== (2) throughput benchmark ($(left 150) s at most)"
timeout "$(left 150)" "$PY" benchmarks/bench_nn.py --device "$DEV" "${BENCH_ARGS[@]}" --out "$RES/nn_$DEV.json" \
  2>&1 | tee "$RES/bench.log"
say "   part (2) exit $? at $(( $(date +%s) - START )) s (nn_$DEV.json holds every finished measurement)"

say "== (3) Figure 5 protocol, configs/figure5_gpu_fast.yaml ($(left 240) s at most)"
timeout "$(left 240)" "$PY" - "$DEV" "$DRY" "$RES/gpu_fast" "$CKPT" "$FMNIST" <<'PYEOF' 2>&1 | tee "$RES/figure5_gpu_fast.log"
import sys
from sdlib.nn.config import load_config
from sdlib.nn.graph import train

dev, dry, out, ckpt, fmnist = sys.argv[1:]
over = {"device": dev, "data_dir": fmnist}
if dry == "1":   # seconds on a CPU: the plumbing only
    over.update(seeds=[0], steps=2, epochs=1, n_train=64, n_val=32, n_test=64, alphas=[0.0, 0.5], amp="none")
cfg = load_config("configs/figure5_gpu_fast.yaml", **over)
doc = train(cfg, out, checkpoint_dir=ckpt, progress=False, on_task=lambda s: print(s, flush=True))
res = doc["results"]
print(f"wrote {out}/results.json: {res['fits_trained']} fits trained, {res['fits_loaded']} loaded, "
      f"{doc['provenance']['seconds']:.1f} s")
PYEOF
say "   part (3) exit $? at $(( $(date +%s) - START )) s"
if [[ $DRY == 0 && -z "${OUT:-}" && -f $RES/nn_$DEV.json ]]; then cp "$RES/nn_$DEV.json" benchmarks/results/; fi
rm -rf "$CKCHECK"; if [[ $DRY == 1 ]]; then rm -rf "$CKPT"; fi
say "== done in $(( $(date +%s) - START )) s; outputs in $RES"
