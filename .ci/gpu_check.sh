#!/usr/bin/env bash
# The GPU checks, run once on a lent device machine (not part of CI):
#   wheels for Django & co. travel in .whl (see docs/benchmarks.md, "GPU"); results land in $OUT.
# 1. LPIPS 2AFC evaluation throughput on CUDA: ours (fp32, bf16) vs the reference lpips package.
# 2. Continuous training: N-th judgment -> dashboard at 10k and 100k judgments (devtools.bench_training).
# 3. CNN-autoencoder pool training on CUDA (default 16-model pool, and the paper's 96), last.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/platform:$PWD PYTHONUNBUFFERED=1 PERCEPTLAB_OFFLINE=1
export PERCEPTLAB_DATA_DIR=/tmp/pl-data DJANGO_SETTINGS_MODULE=config.settings.local
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee -a "$OUT/gpu.txt"

echo "== 1. LPIPS 2AFC evaluation on CUDA" | tee "$OUT/metric.txt"
python3 - <<'PY' 2>&1 | tee -a "$OUT/metric.txt"
import time, numpy as np, torch, warnings
warnings.filterwarnings("ignore")
from metric.lpips import LPIPS
from metric.data import TwoAFCData
from metric.evaluate import lpips_2afc_distances
from devtools.bench_metric import _reference_model
n = 20000
rng = np.random.default_rng(0)
a = rng.integers(0, 256, (3, n, 64, 64, 3), dtype=np.uint8)
data = TwoAFCData(a[0], a[1], a[2], np.full(n, 0.5), ["x"] * n)
ours = LPIPS(net="alex", backbone_weights="random", seed=0)
ref = _reference_model(ours).cuda()
def timed(fn, reps=3):
    fn(); torch.cuda.synchronize(); best = 1e9
    for _ in range(reps):
        t = time.perf_counter(); fn(); torch.cuda.synchronize(); best = min(best, time.perf_counter() - t)
    return best
@torch.no_grad()
def reference():
    for s in range(0, n, 500):
        r, p0, p1 = (torch.from_numpy(x[s:s+500]).cuda().permute(0, 3, 1, 2).float() / 127.5 - 1 for x in (data.ref, data.p0, data.p1))
        ref(r, p0); ref(r, p1)
t_ref = timed(reference)
t32 = timed(lambda: lpips_2afc_distances(ours, data, batch=500, device="cuda"))
t16 = timed(lambda: lpips_2afc_distances(ours, data, batch=500, precision="bf16", device="cuda"))
d0, d1 = lpips_2afc_distances(ours, data, batch=500, device="cuda")
e0, e1 = lpips_2afc_distances(ours, data, batch=500, precision="bf16", device="cuda")
agree = float(np.mean((d0 < d1) == (e0 < e1)))
print(f"{n} triplets, batch 500: reference {n/t_ref:,.0f} triplets/s; ours fp32 {n/t32:,.0f}/s ({t_ref/t32:.2f}x); "
      f"bf16 {n/t16:,.0f}/s ({t_ref/t16:.2f}x), decisions agree with fp32 {agree:.4f}")
PY

echo "== 2. continuous training bench on CUDA" | tee "$OUT/training.txt"
python3 manage.py migrate -v0 && python3 manage.py bench_training --sizes 10000 100000 --out "$OUT/benchmarks_gpu.md" 2>&1 | grep -v INFO | tee -a "$OUT/training.txt"

echo "== 3. CNN pool on CUDA" | tee "$OUT/cnn.txt"
for n in 16 96; do
  start=$SECONDS
  python3 -m distortions train-cnn-pool /tmp/pool$n --models $n --device cuda >/dev/null 2>>"$OUT/cnn.log"
  echo "models=$n steps=200 batch=12 wall=$((SECONDS - start)) s (rc $?)" | tee -a "$OUT/cnn.txt"
done
