"""Check ORT ``TensorQuantOverrides`` for a float model before quantizing it.

An op in a QDQ model sees one quantized type: its activation inputs and its output must
agree, unless a ``convert`` entry converts a tensor for that op. Overrides that promote a
tensor to another type without those converts describe an invalid model — what ORT's
``MixedPrecisionTensorQuantOverridesFixer`` (used by ``get_qnn_qdq_config``) repairs.
:func:`check_overrides` lists every such boundary and shows the entries the fixer adds.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import onnx


@dataclass
class TypeConflict:
    """``node`` consumes ``tensor`` as ``input_type`` but produces ``output_type``."""

    node: str
    op_type: str
    tensor: str
    input_type: str
    output_type: str

    def __str__(self) -> str:
        return (f"node '{self.node}' ({self.op_type}) reads '{self.tensor}' as {self.input_type} "
                f"but produces {self.output_type}, and no 'convert' entry converts it")


@dataclass
class OverrideReport:
    conflicts: list[TypeConflict] = field(default_factory=list)
    fixed: dict = field(default_factory=dict)
    changes: dict = field(default_factory=dict)  # tensor → (before, after)

    @property
    def valid(self) -> bool:
        return not self.conflicts


def _qtype_name(info) -> str:
    return info.quant_type.name if hasattr(info.quant_type, "name") else str(info.quant_type)


def find_conflicts(model: onnx.ModelProto, overrides: dict, default_type) -> list[TypeConflict]:
    """Every (op, activation input) whose consumed type differs from the op's output type."""
    from onnxruntime.quantization.tensor_quant_overrides import TensorQuantOverridesHelper

    helper = TensorQuantOverridesHelper(copy.deepcopy(overrides))
    initializers = {i.name for i in model.graph.initializer}
    conflicts = []
    for node in model.graph.node:
        if not node.output or not node.output[0]:
            continue
        out_type = _qtype_name(helper.get_node_output_qtype_info(node.output[0], default_type))
        for tensor in node.input:
            if not tensor or tensor in initializers:
                continue
            in_info = helper.get_node_input_qtype_info(tensor, node.name, default_type)
            in_type = _qtype_name(in_info)
            if in_type != out_type:
                conflicts.append(TypeConflict(node.name, node.op_type, tensor, in_type, out_type))
    return conflicts


def check_overrides(model: onnx.ModelProto, overrides: dict, default_type=None) -> OverrideReport:
    """Conflicts in ``overrides`` and the fix ORT's mixed-precision fixer would apply.

    ``overrides`` is ORT's format: ``{tensor: [{"quant_type": QuantType.QUInt16, ...}]}``.
    """
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.execution_providers.qnn.mixed_precision_overrides_utils import (  # noqa: E501
        MixedPrecisionTensorQuantOverridesFixer,
    )
    from onnxruntime.quantization.tensor_quant_overrides import TensorQuantOverridesHelper

    default_type = default_type or QuantType.QUInt8
    report = OverrideReport(conflicts=find_conflicts(model, overrides, default_type))
    helper = TensorQuantOverridesHelper(copy.deepcopy(overrides))
    fixer = MixedPrecisionTensorQuantOverridesFixer.create_from_model(helper, model,
                                                                      default_type)
    fixer.apply(default_type, False)
    report.fixed = helper.get_dict()
    for tensor in sorted(set(report.fixed) | set(overrides)):
        before, after = overrides.get(tensor), report.fixed.get(tensor)
        if before != after:
            report.changes[tensor] = (before, after)
    return report


def overrides_from_json(data: dict) -> dict:
    """JSON overrides (``{"t": [{"quant_type": "QUInt16"}]}``) → ORT's in-memory format."""
    from onnxruntime.quantization import QuantType

    def convert(entry: dict) -> dict:
        out = dict(entry)
        if isinstance(out.get("quant_type"), str):
            out["quant_type"] = QuantType[out["quant_type"]]
        if isinstance(out.get("convert"), dict):
            conv = convert(out["convert"])
            if "recv_nodes" in conv:
                conv["recv_nodes"] = set(conv["recv_nodes"])
            out["convert"] = conv
        return out

    return {tensor: [convert(e) for e in entries] for tensor, entries in data.items()}


def format_report(report: OverrideReport) -> str:
    if report.valid:
        return "overrides are consistent: every op reads and writes one quantized type"
    lines = [f"{len(report.conflicts)} type conflict(s):"]
    lines += [f"  - {c}" for c in report.conflicts]
    lines.append("fix (entries ORT's mixed-precision fixer adds or changes):")
    for tensor, (before, after) in report.changes.items():
        lines.append(f"  {tensor}:\n    before: {before}\n    after:  {after}")
    return "\n".join(lines)
