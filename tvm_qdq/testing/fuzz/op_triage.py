"""Triage of a fuzz graph whose outputs differ from ORT's: every op judged on its own inputs.

:func:`triage` exposes every quantized tensor of a graph (as an integer output), runs the
graph in ONNX Runtime (reference path, optimizations off) and in tvm-qdq, and judges each op
*on its inputs alone* (:func:`~.judgement.judge_op`):

* **direct**: the op read identical codes in both runs, so its output is compared as it is;
* **re-judged**: some input already differs (downstream of a divergence), so the op is cut
  out of the graph with its inputs as graph inputs (the quantized codes, ``DQ`` → op → ``Q``
  as written), compiled by tvm-qdq alone and fed *ORT's* codes for those inputs.  Its
  output is compared with ORT's output of the same node, which read the same codes.

The graph is *explained* when no op fails.  A real bug after a tie is therefore judged like
one anywhere else: its op is re-judged on ORT's values and fails.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import execution
from .builder import BuiltTensor, GraphBuilder, replay
from .judgement import OpJudgement, Verdict, computed_exactly, judge_op
from .onnx_types import QTYPES, onnx_model, qrange
from .spec import GraphSpec

#: Prefix of the graph inputs of a re-judge model (ORT's codes of a cut tensor).
REF_PREFIX = "ort_ref__"


def _exact_op_output(b: GraphBuilder, rec: dict,
                     inputs_q: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Exact (float64) real outputs of op ``rec`` given its inputs' quantized values.

    The op runs in onnx's numpy reference evaluator on float64 data: activations are
    ``(q - zp) · s`` in float64 from ``inputs_q``, constants are their exact real values.
    """
    from onnx.reference import ReferenceEvaluator

    k = [r for r in b.records if r["kind"] == "op"].index(rec) + 1
    node = next(n for n in b.nodes if n.name == b.n(f"{rec['op'].lower()}_{k}"))
    init_values = {t.name: numpy_helper.to_array(t) for t in b.inits}
    producers = {o: n for n in b.nodes for o in n.output}
    feeds: dict[str, np.ndarray] = {}
    inputs: list[onnx.ValueInfoProto] = []
    for name in node.input:
        if not name or name in feeds:
            continue
        if name in init_values:
            value = init_values[name].astype(np.float64) if init_values[name].dtype.kind == "f" \
                else init_values[name]
        else:
            dq = producers[name]
            src = dq.input[0]
            s = init_values[dq.input[1]].astype(np.float64)
            z = init_values[dq.input[2]].astype(np.float64)
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            block = next((a.i for a in dq.attribute if a.name == "block_size"), 0)
            q = inputs_q[src] if src in inputs_q else init_values[src]
            q = np.asarray(q).astype(np.float64)
            if block:
                s = np.repeat(s, block, axis=axis)
                z = np.repeat(z, block, axis=axis)
            elif s.ndim == 1:
                shape = [1] * q.ndim
                shape[axis % q.ndim] = s.size
                s, z = s.reshape(shape), z.reshape(shape)
            value = (q - z) * s
        feeds[name] = np.asarray(value)
        elem = helper.np_dtype_to_tensor_dtype(feeds[name].dtype)
        inputs.append(helper.make_tensor_value_info(name, elem, list(feeds[name].shape)))
    outs = [helper.make_tensor_value_info(o, TensorProto.DOUBLE, None) for o in node.output]
    graph = helper.make_graph([node], "one", inputs, outs)
    model = onnx_model(graph, b.opset)
    return [np.asarray(v, np.float64) for v in ReferenceEvaluator(model).run(None, feeds)]


def _exact_real(b: GraphBuilder, name: str, rec: dict | None, ort_q: dict[str, np.ndarray],
                feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Exact real value of tensor ``name`` before its QuantizeLinear, on ORT's input codes."""
    if rec is None:  # a graph input, quantized from the same float feed in both
        return feeds[b.n(name)].astype(np.float64)
    if rec["op"] == "Requant":
        src = b.tensors[rec["inputs"][0]["t"]]
        return src.qp.dequantize(ort_q[src.q])
    return _exact_op_output(b, rec, ort_q)[rec["outputs"].index(name)]


def rejudge_model(b: GraphBuilder, recs: Sequence[dict],
                  ort_q: dict[str, np.ndarray]) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The ops ``recs`` cut out of ``b``'s graph, each reading ORT's codes of its inputs.

    For each op, the nodes between its input tensors' codes ``t_q`` and its outputs' codes
    (``DQ`` of the inputs, constants, the op, the output ``Q``) are kept; every ``t_q`` read
    becomes a graph input ``ort_ref__<t_q>`` fed ``ort_q[t_q]`` (so an op whose input is
    another re-judged op's output still reads ORT's value).  Returns the model and its feeds.
    """
    producers = {o: n for n in b.nodes for o in n.output}
    init_by_name = {t.name: t for t in b.inits}
    kept: dict[str, onnx.NodeProto] = {}
    used_inits: set[str] = set()
    cut_all: dict[str, BuiltTensor] = {}
    outputs: list[onnx.ValueInfoProto] = []
    for rec in recs:
        cut = {b.tensors[i["t"]].q: b.tensors[i["t"]] for i in rec["inputs"] if "t" in i}
        cut_all.update(cut)
        targets = [b.tensors[o] for o in rec["outputs"]]
        outputs += [helper.make_tensor_value_info(t.q, QTYPES[t.qp.dtype][1], None)
                    for t in targets]
        stack, seen = [t.q for t in targets], set()
        while stack:
            name = stack.pop()
            if not name or name in seen or name in cut:
                continue
            seen.add(name)
            if name in init_by_name:
                used_inits.add(name)
                continue
            node = producers[name]
            if node.name not in kept:
                copy = onnx.NodeProto()
                copy.CopyFrom(node)
                copy.input[:] = [REF_PREFIX + i if i in cut else i for i in node.input]
                kept[node.name] = copy
            stack.extend(node.input)
    nodes = [kept[n.name] for n in b.nodes if n.name in kept]  # original (topological) order
    inputs = [helper.make_tensor_value_info(REF_PREFIX + q, QTYPES[t.qp.dtype][1],
                                            list(ort_q[q].shape)) for q, t in cut_all.items()]
    graph = helper.make_graph(nodes, "rejudge", inputs, outputs,
                              [init_by_name[n] for n in sorted(used_inits)])
    model = onnx_model(graph, b.opset)
    return model, {REF_PREFIX + q: ort_q[q] for q in cut_all}


def triage(spec: GraphSpec, feeds: dict[str, np.ndarray] | None = None) -> Verdict:
    """Judge every op of ``spec`` on its own inputs (module docstring); explain or confirm.

    The probe model makes every quantized tensor an output and runs in ORT and tvm-qdq.  Ops
    whose inputs' codes agree are judged directly; the others are re-judged together in one
    :func:`rejudge_model` compiled by tvm-qdq and fed ORT's codes.  ``explained`` is true
    when no op fails.
    """
    b = replay(spec)
    feeds = feeds if feeds is not None else b.test
    qnames = [b.tensors[name].q for name in b.order]
    outs = [helper.make_tensor_value_info(q, QTYPES[b.tensors[name].qp.dtype][1], None)
            for q, name in zip(qnames, b.order, strict=True)]
    graph = helper.make_graph(b.nodes, "probe", b.inputs, outs, b.inits)
    model = onnx_model(graph, spec.opset)
    expected = execution.run_reference(model, feeds)
    try:
        _, actual = execution.compile_and_run(model, feeds)
    except Exception as err:  # noqa: BLE001
        return Verdict(False, f"triage: the probe model (all tensors as outputs) fails: {err}")
    ort_q = dict(zip(qnames, expected, strict=True))
    tvm_q = dict(zip(qnames, actual, strict=True))
    ops = [r for r in b.records if r["kind"] == "op"]
    rejudged = [r for r in ops if any(
        "t" in i and not np.array_equal(tvm_q[b.tensors[i["t"]].q], ort_q[b.tensors[i["t"]].q])
        for i in r["inputs"])]
    if rejudged:
        cut_model, cut_feeds = rejudge_model(b, rejudged, ort_q)
        try:
            _, values = execution.compile_and_run(cut_model, cut_feeds)
        except Exception as err:  # noqa: BLE001
            return Verdict(False, f"triage: the re-judge model (ops after a divergence, on ORT's "
                                  f"inputs) fails: {type(err).__name__}: {err}")
        tvm_q.update(zip((o.name for o in cut_model.graph.output), values, strict=True))
    producer = {o: r for r in ops for o in r["outputs"]}
    rejudged_ids = {id(r) for r in rejudged}
    judgements: list[OpJudgement] = []
    for name in b.order:
        t = b.tensors[name]
        rec = producer.get(name)
        nd = len(t.shape)
        s_b = t.qp.scale.astype(np.float64).reshape(t.qp.bshape(nd))
        z_b = t.qp.zero_point.astype(np.float64).reshape(t.qp.bshape(nd))
        lo, hi = qrange(t.qp.dtype)

        def codes(name: str = name, rec: dict | None = rec, s_b: np.ndarray = s_b,
                  z_b: np.ndarray = z_b, lo: int = lo, hi: int = hi) -> np.ndarray:
            return np.clip(_exact_real(b, name, rec, ort_q, feeds) / s_b + z_b, lo, hi)

        a, e = tvm_q[t.q], ort_q[t.q]
        if a.shape != e.shape:
            outcome, diff, dmax, note = "fail", int(e.size), -1, f"shape {a.shape} vs {e.shape}"
        else:
            outcome, diff, dmax, note = judge_op(a, e, codes, computed_exactly(rec),
                                                 zero_point=z_b)
        route = "rejudged" if rec is not None and id(rec) in rejudged_ids else "direct"
        judgements.append(OpJudgement(f"{spec.prefix}{name}", rec["op"] if rec else "input",
                                      t.qp.dtype, route, outcome, int(e.size), diff, dmax, note))
    explained = all(j.ok for j in judgements)
    notes = [j.describe() for j in judgements if j.outcome != "exact" or j.route == "rejudged"]
    counts = Counter(j.category for j in judgements)
    summary = ", ".join(f"{k} {counts[k]}" for k in
                        ("exact", "tie", "fail", "rejudged_pass", "rejudged_fail") if counts[k])
    reason = f"triage ({summary}): " + ("; ".join(notes) or "no quantized tensor differs")
    return Verdict(explained, reason, judgements)
