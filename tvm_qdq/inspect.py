"""``tvm_qdq.inspect(model)``: what a quantized model holds and what tvm-qdq makes of it."""

from __future__ import annotations

import os
from collections import Counter

import onnx
import tvm

from .errors import UnsupportedOpsError

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
QOPERATOR_OPS = {
    "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "MatMulInteger16", "QGemm",
    "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax",
    "QLinearConcat", "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearWhere",
    "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "DynamicQuantizeLSTM", "QAttention",
    "QEmbedLayerNormalization",
}
DYNAMIC_OPS = {"DynamicQuantizeLinear", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
               "DynamicQuantizeLSTM"}


def _formats(proto: onnx.ModelProto) -> list[str]:
    ops = {(n.domain or "", n.op_type) for n in proto.graph.node}
    found = []
    if any(op in QDQ_OPS and dom == "" for dom, op in ops):
        found.append("QDQ")
    if any(op in QDQ_OPS and dom == "com.microsoft" for dom, op in ops):
        found.append("QDQ (com.microsoft Q/DQ)")
    if any(op in QOPERATOR_OPS for _, op in ops):
        found.append("QOperator")
    if any(op in DYNAMIC_OPS for _, op in ops):
        found.append("dynamic")
    return found or ["float (no quantized ops)"]


def _quantized_tensors(proto: onnx.ModelProto) -> dict[str, dict]:
    """Each tensor a Q produces or a DQ reads: its integer type and parameter layout."""
    from .frontend.onnx.context import onnx_type_name
    from .frontend.onnx.importer import _elem_types

    types = _elem_types(proto)
    inits = {i.name: i for i in proto.graph.initializer}
    result = {}
    for node in proto.graph.node:
        if node.op_type not in QDQ_OPS:
            continue
        tensor = node.output[0] if node.op_type == "QuantizeLinear" else node.input[0]
        scale = inits.get(node.input[1])
        size = 1 if scale is None else max(1, int(__import__("numpy").prod(scale.dims)))
        result[tensor] = {
            "type": onnx_type_name(types.get(tensor, 0)) or "unknown",
            "params": "per-tensor" if size == 1 else f"per-axis ({size})",
            "constant": tensor in inits,
        }
    return result


def _declared_dims(value: onnx.ValueInfoProto) -> list[int | str]:
    """An ONNX graph input's declared shape: sizes and dimension names (an unnamed dynamic
    dimension is named ``{input}_dim{axis}``, as the importer names it)."""
    dims = value.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else
            (d.dim_param or f"{value.name}_dim{i}") for i, d in enumerate(dims)]


def _declared_inputs(proto: onnx.ModelProto) -> list[dict]:
    """The graph inputs (initializers left out) with their declared types and shapes."""
    from .frontend.onnx.context import onnx_type_name

    inits = {i.name for i in proto.graph.initializer}
    return [{"name": v.name, "type": onnx_type_name(v.type.tensor_type.elem_type) or "unknown",
             "shape": _declared_dims(v)} for v in proto.graph.input if v.name not in inits]


def signature(mod: tvm.IRModule) -> dict:
    """The inputs and outputs of a Relax module as a compiled model sees them (name, type,
    container dtype, shape with dimension names) and the bounds of its symbolic dimensions:
    ``bounds`` (the user's, ``tir_var_upper_bound``) and ``implicit_bounds`` (assumed by the
    import (a static table sliced by the dimension) or the integer pass (exact int32
    accumulation))."""
    from .backend.base import describe_signature, model_bounds, model_specs

    return describe_signature(*model_specs(mod), model_bounds(mod))


def _shape_text(shape: list) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def format_signature(sig: dict) -> list[str]:
    """Text lines of :func:`signature`'s result (inputs, outputs when known, bounds)."""
    lines = ["inputs:"]
    lines += [f"  {t['name']:24s} {t['type']:8s} {_shape_text(t['shape'])}"
              for t in sig["inputs"]]
    if sig.get("outputs"):
        lines.append("outputs:")
        lines += [f"  {t['name']:24s} {t['type']:8s} {_shape_text(t['shape'])}"
                  for t in sig["outputs"]]
    if sig.get("bounds"):
        lines.append("bounds: " + ", ".join(f"{k} ≤ {v}" for k, v in sig["bounds"].items()))
    if sig.get("implicit_bounds"):
        lines.append("implicit bounds (assumed by the compile): " + ", ".join(
            f"{k} ≤ {v}" for k, v in sig["implicit_bounds"].items()))
    return lines


def export_signature(folder: str | os.PathLike) -> dict:
    """:func:`signature` of a compiled model's export (its ``meta.json``; the module is not
    loaded), with its ``format`` and ``target``."""
    from pathlib import Path

    from .backend.base import describe_signature, export_bounds, read_export

    meta, inputs, outputs, _ = read_export(Path(folder), None)
    return {"format": meta.get("format"), "target": meta.get("target"),
            **describe_signature(inputs, outputs, export_bounds(meta))}


def inspect(model: str | os.PathLike | bytes | onnx.ModelProto,
            shapes: dict[str, list[int]] | None = None,
            bounds: dict[str, int] | None = None) -> dict:
    """Describe ``model``: formats, quantized ops, tensor types, integer vs float ops.

    ``shapes`` fixes inputs declared with symbolic dimensions and ``bounds`` bounds them, as
    for ``from_onnx``. Formats, op counts, the declared inputs and unsupported ops are
    reported even when the integer module cannot be built (``error`` then says why).

    Returns a dict with keys ``formats``, ``op_counts``, ``quantized_tensors``,
    ``unsupported`` (node, op, domain triples), ``integer`` (what the pass made integer),
    ``float_ops`` (ops that stayed float), ``signature`` (inputs with dimension names as
    declared, or as the integer module has them, with its outputs, ``bounds`` and
    ``implicit_bounds``: see :func:`signature`) and ``error`` (a failure message, or None).
    """
    from .compile import pass_report, to_integer
    from .frontend.onnx import from_onnx, load_model
    from .frontend.onnx.importer import unsupported_ops

    proto = load_model(model)
    info: dict = {
        "formats": _formats(proto),
        "op_counts": dict(Counter(
            f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
            for n in proto.graph.node
        )),
        "quantized_tensors": _quantized_tensors(proto),
        "unsupported": [list(op) for op in unsupported_ops(proto.graph)],
        "integer": [],
        "float_ops": [],
        "error": None,
        "precision": None,
        "signature": {"inputs": _declared_inputs(proto), "outputs": [], "bounds": {},
                      "implicit_bounds": {}},
    }
    from .precision import precision_map

    try:
        info["precision"] = precision_map(proto).to_dict()
    except Exception as err:  # the map is a report: a failure is reported, not raised
        info["precision"] = {"error": f"{type(err).__name__}: {err}"}
    if info["unsupported"]:
        info["error"] = str(UnsupportedOpsError([tuple(op) for op in info["unsupported"]]))
        return info
    try:
        integer = to_integer(from_onnx(proto, shapes=shapes,
                                       **({"bounds": bounds} if bounds else {})))
        report = pass_report(integer)
        info["signature"] = signature(integer)
    except Exception as err:  # inspection reports failures instead of raising them
        info["error"] = f"{type(err).__name__}: {err}"
        return info
    info["integer"] = [vars(r) for r in report.integer]
    info["float_ops"] = report.float_ops
    return info


def format_inspection(info: dict) -> str:
    """Human-readable text of :func:`inspect`'s result."""
    lines = [f"formats: {', '.join(info['formats'])}"]
    if info.get("signature"):
        lines += format_signature(info["signature"])
    lines.append("ops:")
    lines += [f"  {op:32s} {n}" for op, n in sorted(info["op_counts"].items())]
    types = Counter(t["type"] for t in info["quantized_tensors"].values())
    lines.append("quantized tensors by type: " + ", ".join(f"{k}: {v}" for k, v in
                                                           sorted(types.items())))
    lines.append("integer ops (from the pass):")
    counts = Counter((r["op"], r["outcome"], r["detail"]) for r in info["integer"])
    lines += [f"  {op:24s} {outcome:10s} {detail}  ×{n}" for (op, outcome, detail), n in
              sorted(counts.items())]
    compute = [f for f in info["float_ops"] if f["compute"]]
    lines.append(f"float ops left: {len(info['float_ops'])} ({len(compute)} conv/matmul)")
    lines += [f"  {op}  ×{n}" for op, n in sorted(Counter(f["op"] for f in
                                                            info["float_ops"]).items())]
    if info["unsupported"]:
        lines.append("unsupported ops:")
        lines += [f"  '{name}' {dom + '.' if dom else ''}{op}" for name, op, dom in
                  info["unsupported"]]
    if info["error"]:
        lines.append(f"error: {info['error']}")
    return "\n".join(lines)
