#!/usr/bin/env bash
# The CUDA benchmark suite (benchmarks/gpu_suite.py): k-means fit and encode at 1M and 10M x 128 against
# faiss-gpu (or torch baselines), RQ-VAE and DRQ-VAE epochs, O_pi at 10M, TIGER training and beam search.
#
#   bash benchmarks/gpu_suite.sh            # on a CUDA machine (sized for under 8 minutes on one GPU)
#   bash benchmarks/gpu_suite.sh --tiny     # toy sizes on the CPU: checks that the suite runs (CI)
#
# Extra arguments go to gpu_suite.py (--device, --threads, --sections). PYTHON overrides the interpreter.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python="python3"; fi
fi
exec "$python" "$here/gpu_suite.py" "$@"
