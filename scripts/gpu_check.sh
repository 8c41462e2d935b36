#!/usr/bin/env bash
# GPU checks on a lent GPU machine; each part runs alone and writes what it measured under $OUT (default gpu_out/).
#
#   bash scripts/gpu_check.sh kernels   # <= 5 min: CUDA parity FlashIPA vs IPA (fp32, bf16), the fused SDPA kernel
#                                       # each preset takes at L = 512 and 4096, bench_ipa L = 256..16384, peak
#                                       # memory of one foldflow_flash bf16 training step at L = 2048 and 8192
#   bash scripts/gpu_check.sh learn     # ~10 min: foldflow_flash in bf16 on the processed shared set for ~7 min,
#                                       # 8 backbones each at L = 100 and 300 (seconds per backbone), learning report
# Both together fit the device's 12 minutes; run them as two calls, kernels first.
#
# The machine is bare: nothing is installed and nothing can be fetched there. It needs
#   - the processed shared set (python scripts/preprocess.py raw_dir=../shared/data/pdb out_dir=data/processed/shared
#     here, then name data/processed/shared in the run's carry), and
#   - the wheels of what its image lacks, downloaded here for its Python 3.12 into .whl/ (also carried):
#     bash scripts/gpu_check.sh wheels
# Back here, score the samples with ProteinMPNN (which does not fit the transfer limit) beside the natural chains:
#   tar xzf <files_at>/samples.tar.gz -C /tmp && python scripts/bench_learning.py --samples-dir /tmp/samples --processed-dir data/processed/shared \
#       --lengths 100 300 --out bench_results/gpu_learn
set -euo pipefail
cd "$(dirname "$0")/.."
part="${1:-}"
OUT="${OUT:-gpu_out}"       # what comes back: at most 8 files
WORK="${FLOWBB_GPU_WORK:-/tmp/flowbb_gpu}"   # the run and samples (checkpoints stay on the machine)
DATA="${FLOWBB_GPU_DATA:-data/processed/shared}"
WHEELS=("hydra-core==1.3.2" "omegaconf==2.3.0" "antlr4-python3-runtime==4.9.3" "tmtools==0.3.0" "roma==1.8.0")

use_wheels() {  # the carried wheels (if any) and flowbb from the working tree, on the bare GPU image
  if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
  fi
  export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
}

case "$part" in
  wheels)
    echo "/.whl/" >> .git/info/exclude
    for w in "${WHEELS[@]}"; do
      python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d .whl "$w" || python3 -m pip download -q --no-deps --no-binary=:all: -d .whl "$w"
    done
    ls -la .whl
    ;;
  kernels)
    use_wheels
    mkdir -p "$OUT"
    start=$(date +%s)
    # parity (fp32 1e-4, bf16 3e-2 relative, tests/model/test_flash_ipa.py) and the CUDA attention tests
    python3 -m pytest -q -p no:cacheprovider tests/model/test_flash_ipa.py tests/model/test_attention.py \
      2>&1 | tee "$OUT/parity.txt" | tail -n 5
    python3 scripts/sdpa_backends.py --device cuda --lengths 512 4096 --dtype bf16 --out "$OUT/sdpa_backends.json"
    timeout 150 python3 scripts/bench_ipa.py --device cuda --lengths 256 1024 4096 16384 --repeats 3 \
      --out "$OUT/bench_ipa_cuda.json" 2>&1 | tail -n 25 || echo "bench_ipa: stopped at its time limit"
    python3 scripts/bench_train.py --device cuda --precision bf16 --models flash --lengths 2048 8192 \
      --fit-range 2048 8192 --out "$OUT/bench_train_cuda.json" 2>&1 | tail -n 8
    echo "gpu_check kernels: done in $(( $(date +%s) - start )) s"
    ;;
  learn)
    use_wheels
    if [ ! -f "$DATA/metadata.parquet" ]; then
      echo "gpu_check learn: no processed set at $DATA; make it here and carry it (see the header)" >&2
      exit 2
    fi
    python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
    mkdir -p "$OUT" "$WORK"
    start=$(date +%s)
    # ~7 minutes of training; the cosine schedule is set for the steps that fit (FLOWBB_GPU_STEPS, default 3000)
    python3 train.py experiment=foldflow_flash trainer=gpu data=pdb data.processed_dir="$DATA" \
      data.filters.monomer_only=false logger=csv "hydra.run.dir=$WORK/run" \
      "trainer.max_steps=${FLOWBB_GPU_STEPS:-3000}" +trainer.max_time=00:00:07:00 trainer.log_every_n_steps=20 \
      callbacks.checkpoint.every_n_train_steps=500 callbacks.checkpoint.save_top_k=-1 \
      callbacks.validation.every_n_steps=0 trainer.enable_progress_bar=false 2>&1 | tail -n 20
    echo "training: $(( $(date +%s) - start )) s"
    python3 scripts/sample.py ckpt_path="$WORK/run/checkpoints/last.ckpt" "lengths=[100,300]" samples_per_length=8 \
      out_dir="$WORK/samples" device=cuda
    python3 scripts/bench_learning.py --run-dir "$WORK/run" --out "$WORK/learning" --lengths 100 300 --samples 8 \
      --natural 16 --no-mpnn --device cuda --threads 8
    # what comes back (6 files): the report, the metrics, the sampler's table and the samples as one archive
    cp "$WORK/run/metrics.csv" "$WORK/learning/learning.json" "$WORK/learning/learning.md" \
      "$WORK/learning/learning.png" "$WORK/samples/samples.csv" "$OUT/"
    tar czf "$OUT/samples.tar.gz" -C "$WORK" samples
    echo "gpu_check learn: done in $(( $(date +%s) - start )) s"
    ;;
  *)
    echo "usage: bash scripts/gpu_check.sh wheels|kernels|learn (see the header)" >&2
    exit 2
    ;;
esac
