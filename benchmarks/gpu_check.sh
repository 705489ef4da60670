#!/usr/bin/env bash
# The GPU path's checks and figures in one call of a lent GPU machine (its image has torch,
# numpy, pluggy, typer, rich, pyyaml, scipy, matplotlib, pytest; not pydantic): carry .whl/
# holding testbed's wheel and the packages missing there (README, "GPU"). Writes to $OUT.
#   1. tests/test_cuda.py and the device-path tests, on the GPU;
#   2. the throughput curve (bench_training.py --device cuda), and one point without CUDA graphs;
#   3. the default scenario on 10,000 seeds x 1000 epochs, end to end (bench_gpu_run.py), last:
#      cut at FULL_S seconds, its progress lines still say how far it got and how fast.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, testbed; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(), 'testbed', testbed.__version__)"
echo "== tests on the GPU"
timeout "${TESTS_S:-60}" python3 -m pytest -q -p no:cacheprovider -n 4 tests/test_cuda.py tests/test_device.py tests/test_batch_order.py 2>&1 \
  | tee "$OUT/tests.log" | tail -25
echo "== curve (CUDA graphs on; then off at ${OFF_SEEDS:-1000} seeds)"
timeout "${CURVE_S:-50}" python3 benchmarks/bench_training.py --device cuda --seeds ${CURVE_SEEDS:-1 1000} --repeats 1 \
  --naive-epochs 2 --json "$OUT/curve.json" 2>&1 | tee "$OUT/curve.log" | tail -8
TESTBED_CUDA_GRAPHS=0 timeout "${OFF_S:-25}" python3 benchmarks/bench_training.py --one testbed "${OFF_SEEDS:-1000}" 3 --device cuda \
  2>&1 | tee "$OUT/graphs_off.json" | tail -1
echo "== ${FULL_SEEDS:-10000} seeds x the default scenario"
timeout "${FULL_S:-330}" python3 benchmarks/bench_gpu_run.py --seeds "${FULL_SEEDS:-10000}" --device cuda --out /tmp/run10k --every 25 \
  --json "$OUT/full.json" 2>&1 | tee "$OUT/full.log"
du -sh /tmp/run10k 2>/dev/null
