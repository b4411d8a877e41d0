"""Target presets: names users pass to ``tvm_qdq.compile(..., target=...)``."""

from .presets import PRESETS, resolve_target, target_family

__all__ = ["PRESETS", "resolve_target", "target_family"]
