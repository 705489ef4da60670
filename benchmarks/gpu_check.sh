#!/usr/bin/env bash
# The GPU path's checks and figures in one call of a lent GPU machine (its image has torch,
# numpy, pluggy, typer, rich, pyyaml, scipy, matplotlib, pytest; not pydantic): carry .whl/
# holding testbed's wheel and the packages missing there (README, "GPU"). Writes to $OUT.
#   1. tests/test_cuda.py and the device-path tests, on the GPU;
#   2. the default scenario on 10,000 seeds x 1000 epochs, end to end (bench_gpu_run.py);
#   3. the throughput curve over 1 to 10,000 seeds (bench_training.py --device cuda).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, testbed; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(), 'testbed', testbed.__version__)"
echo "== tests on the GPU"
timeout "${TESTS_S:-120}" python3 -m pytest -q -p no:cacheprovider -n 4 tests/test_cuda.py tests/test_device.py tests/test_batch_order.py 2>&1 | tee "$OUT/tests.log" | tail -25
echo "== 10,000 seeds x the default scenario"
timeout "${FULL_S:-330}" python3 benchmarks/bench_gpu_run.py --seeds "${FULL_SEEDS:-10000}" --device cuda --out /tmp/run10k --every 25 \
  --json "$OUT/full.json" 2>&1 | tee "$OUT/full.log"
du -sh /tmp/run10k 2>/dev/null
echo "== curve"
timeout "${CURVE_S:-120}" python3 benchmarks/bench_training.py --device cuda --seeds ${CURVE_SEEDS:-1 100 1000 10000} --repeats 1 \
  --naive-epochs 3 --json "$OUT/curve.json" 2>&1 | tee "$OUT/curve.log"
