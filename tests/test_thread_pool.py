"""The TVM thread pool a compiled model starts (``backend/vm.py``: ``POOL_DEFAULTS``): its
workers are not pinned to cores unless ``TVM_BIND_THREADS`` asks for it (a pinned worker
shares its core with the caller whenever the OS moves the caller there), and the settings
hold only for the first run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_CHECK = textwrap.dedent("""
    import json, os
    import tvm_qdq
    from tvm_qdq.testing.models import quantized_model, random_feeds
    model = quantized_model("resnet_cnn", "u8s8_perchannel")
    compiled = tvm_qdq.compile(model, "x86")
    compiled.run(random_feeds(model, seed=0))
    everything = os.sched_getaffinity(0)
    pinned = [t for t in os.listdir("/proc/self/task")
              if os.sched_getaffinity(int(t)) != everything]
    print(json.dumps({"pinned": len(pinned), "threads": len(os.listdir("/proc/self/task")),
                      "env": {k: os.environ.get(k) for k in
                              ("TVM_BIND_THREADS", "TVM_THREAD_POOL_SPIN_COUNT")}}))
""")


def _run(extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TVM_BIND_THREADS", "TVM_THREAD_POOL_SPIN_COUNT")}
    env.update(extra, TVM_NUM_THREADS="2",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _CHECK], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and two cores")
def test_pool_workers_unpinned_unless_asked() -> None:
    default = _run({})
    assert default["pinned"] == 0, default
    assert default["env"] == {"TVM_BIND_THREADS": None, "TVM_THREAD_POOL_SPIN_COUNT": None}
    asked = _run({"TVM_BIND_THREADS": "1"})
    assert asked["pinned"] >= 1, asked  # TVM's own default, when the user sets it
