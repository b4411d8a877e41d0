"""The README's main job on the embedded default model, printed as a short table.

import (faithful) → integer rewrite → compile for the host CPU → run → compare with ORT.
The default model is a small ResNet-style CNN quantized by ORT's ``quantize_static``
(QDQ, uint8 activations, int8 per-channel weights); it is built locally, nothing is fetched.
"""

from __future__ import annotations

import time


def run_demo(threads: int = 1) -> int:
    import onnxruntime as ort

    from . import compile, from_onnx, pass_report, to_integer
    from .testing.models import default_model, random_feeds
    from .testing.oracle import agreement, output_qparams, run_ort
    from .testing.timing import median_ms

    model = default_model()
    feeds = random_feeds(model)
    out_name = model.graph.output[0].name
    scale, zero_point = output_qparams(model)[out_name]
    expected = run_ort(model, feeds, threads=threads)[0]

    faithful = from_onnx(model)
    integer = to_integer(faithful)
    report = pass_report(integer)
    rows = []
    for stage, mod in (("faithful (float Q/DQ)", faithful), ("integer", integer)):
        start = time.perf_counter()
        compiled = compile(mod, target="x86", integer=False)
        build_s = time.perf_counter() - start
        actual = compiled.run(feeds)[0]
        ag = agreement(actual, expected, scale, zero_point, classify=True)
        ms = median_ms(lambda c=compiled: c.run(feeds))
        rows.append((stage, ag, ms, build_s))

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model.SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])
    ort_ms = median_ms(lambda: session.run(None, feeds))

    ints = [r for r in report.integer if r.outcome == "integer"]
    compute_float = [f for f in report.float_ops if f["compute"]]
    print("tvm-qdq demo: ResNet-style CNN, ORT quantize_static QDQ u8 act / s8 per-channel "
          f"weights, 1x3x32x32 input, {threads} thread(s)")
    print(f"integer pass: {len(ints)} integer ops, {len(report.float_ops)} float ops left "
          f"({len(compute_float)} conv/matmul)")
    print()
    print("| stage | max LSB vs ORT | within 1 LSB | same top-1 | build s | median ms |")
    print("|---|---|---|---|---|---|")
    for stage, ag, ms, build_s in rows:
        print(f"| tvm-qdq {stage} | {ag.max_lsb:.2f} | {100 * ag.frac_within_1:.1f}% | "
              f"{ag.top1_equal} | {build_s:.1f} | {ms:.3f} |")
    print(f"| ONNX Runtime (CPU EP, fused integer kernels) | 0 (oracle) | 100% | True | - | "
          f"{ort_ms:.3f} |")
    ok = all(ag.max_lsb <= 2 and ag.frac_within_1 >= 0.99 for _, ag, _, _ in rows)
    print()
    print("contract (max ≤ 2 LSB, ≥ 99% within 1 LSB):", "PASS" if ok else "FAIL")
    return 0 if ok else 1
