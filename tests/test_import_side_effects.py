"""Importing tvm-qdq changes no global state: no environment variable and no attribute of an
op TVM registered before the import.

The check runs in a fresh interpreter: it imports TVM and the third-party packages tvm-qdq
uses, records the environment and, for every op of ``tvm.ir.Op.list_op_names()``, the value
of every op attribute key TVM registers, then imports ``tvm_qdq``, every one of its modules
and ``relay_passes``'s, and compares. Ops registered by the import (tvm-qdq's own, if any)
are not compared. TVM has no call that lists the attribute keys, so the keys are named
here; the ones this TVM build does not register are skipped (at least the
vectorizability, legalization, type inference and purity keys must be compared).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Op attribute keys of TVM 0.27 (and the names of earlier versions).
ATTRIBUTE_KEYS = (
    "TVectorizable", "FLegalize", "FInferStructInfo", "FInferType", "FPurity", "FCallPacked",
    "FDataDependent", "FInferMixedPrecision", "FLowerBuiltin", "FNormalize", "FPrimalGradient",
    "FRelaxInferLayout", "FValidate", "TAllocator", "TCallEffectKind",
    "TDeviceIntrinsicNamespace", "TGlobalSymbol", "TIRxOpCategory", "TMixedPrecisionPolicy",
    "TScriptDtypePrintLocation", "TScriptPrinterName", "TOpPattern", "dist.FInferType",
    "default.FLegalize", "llvm.FLegalize", "default.FLowerIntrinsic", "llvm.FLowerIntrinsic",
    "hexagon.FLowerIntrinsic", "cuda.FLowerIntrinsic", "nvptx.FLowerIntrinsic",
    "rocm.FLowerIntrinsic", "metal.FLowerIntrinsic", "opencl.FLowerIntrinsic",
    "webgpu.FLowerIntrinsic",
)
#: Keys that must be among the compared ones.
REQUIRED_KEYS = ({"TVectorizable"}, {"FLegalize"}, {"FInferType", "FInferStructInfo"},
                 {"FPurity"})

_CHECK = textwrap.dedent("""
    import importlib, json, os, pkgutil, sys

    import numpy, onnx, onnxruntime  # noqa: F401 - their own import-time effects
    import tvm
    from tvm import relax, s_tir, te, tirx  # noqa: F401

    KEYS = json.loads(sys.argv[1])

    def registered(key):
        try:
            tvm.ir.Op.get(tvm.ir.Op.list_op_names()[0]).get_attr(key)
        except Exception:  # noqa: BLE001 - the key is not registered in this TVM
            return False
        return True

    def value(v):
        handle = getattr(v, "__chandle__", None)
        return ["object", handle()] if handle is not None else ["value", repr(v)]

    def snapshot(names, keys):
        return {f"{name} {key}": value(tvm.ir.Op.get(name).get_attr(key))
                for name in names for key in keys}

    keys = [k for k in KEYS if registered(k)]
    ops = list(tvm.ir.Op.list_op_names())
    env = dict(os.environ)
    before = snapshot(ops, keys)

    import tvm_qdq  # first: relay_passes imports tvm_qdq's modules
    import relay_passes
    failed = {}
    for package in (tvm_qdq, relay_passes):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.startswith("tvm_qdq.frontend.torch"):
                continue  # needs torch, an optional dependency
            if info.name.endswith(".__main__"):
                continue  # a command line, run rather than imported
            try:
                importlib.import_module(info.name)
            except ImportError as err:
                failed[info.name] = str(err)

    after = snapshot(ops, keys)
    changed_env = sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k))
    changed_ops = sorted(k for k in before if before[k] != after[k])
    print(json.dumps({"keys": keys, "ops": len(ops), "env": changed_env, "attrs": changed_ops,
                      "failed": failed}))
""")


def test_import_changes_no_environment_variable_and_no_op_attribute() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TVM_THREAD_POOL_SPIN_COUNT", "TVM_BIND_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", _CHECK, json.dumps(ATTRIBUTE_KEYS)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ops"] > 500
    for alternatives in REQUIRED_KEYS:
        assert alternatives & set(result["keys"]), alternatives
    assert result["failed"] == {}
    assert result["env"] == []
    assert result["attrs"] == []
