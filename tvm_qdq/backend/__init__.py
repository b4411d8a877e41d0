"""Backends: one folder per target family (``x86/``, ``hexagon/``) that turns an integer
Relax module into a runnable :class:`~.base.CompiledModel`.

* :mod:`.base`: the contract (``CompiledModel``, ``Backend``, ``BuildOptions``,
  ``TensorSpec``);
* :mod:`.registry`: the table of backends ``tvm_qdq.compile`` and ``tvm_qdq.load`` use;
* :mod:`.vm` / :mod:`.generic`: models run by TVM's Relax VM, and TVM's default pipeline
  for targets no other backend serves;
* :mod:`.legalize_signedness`, :mod:`.tir_ops`, :mod:`.kernel_tags`: what backends share.
"""
