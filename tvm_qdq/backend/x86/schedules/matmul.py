"""Schedules for matmuls whose both operands are activations (no VNNI weight packing).

These are the attention matmuls of transformer models (``Q·Kᵀ`` and ``softmax·V``): batched
``C[b…, i, j] = Σ_k A[b…, i, k] · B[b…, k, j]`` (``NN``) or ``Σ_k A[b…, i, k] · B[b…, j, k]``
(``NT``), with int16 operands (u8/s8 activations minus their zero points) accumulated in int32,
or float32 operands accumulated in float32; usually followed by a fused elementwise epilogue
(requantize chain, scale + mask, ...).

:func:`schedule_activation_matmul` register-tiles each batch's ``M × N`` output: tiles of
``mr`` rows × ``nr`` vectors of ``lanes`` columns (≤ 16: one zmm of int32/float32 each), the
reduction loop outside the tile, so that each step ``k`` loads ``nr`` row vectors of ``B``,
broadcasts ``mr`` scalars of ``A`` and does ``mr · nr`` vector multiply-adds into accumulators
that stay in registers (tile loops unrolled, lanes vectorized). The epilogue is computed per
tile from the accumulators (intermediates in ``local`` buffers) and vectorized along ``j``.
For ``NT`` operands, ``B`` is first copied per batch into a ``K × N`` buffer (a transpose of
``N · K`` elements, against ``M · N · K`` MACs) so that its rows are unit-stride. The first
non-unit batch loop is parallel (in chunks) when the kernel is large.

int16 × int16 → int32 with an even reduction on AVX-512 VNNI (kind ``activation_matmul_vnni``):
two reduction steps per ``vpdpwssd`` (:data:`PAIRS_INTRIN`): the ``A`` pair ``A[i, 2q:2q+2]``
(contiguous) is broadcast as one int32, the two ``B`` rows ``B[2q, j:j+16]``, ``B[2q+1, j:j+16]``
are interleaved in registers (one shuffle per vector of ``B``, shared by the ``mr`` rows), so
no packed copy of ``B`` is needed: one instruction per 32 multiply-adds instead of a
``vpmulld`` and a ``vpaddd`` per 16.

Numerics: each output element is still the sum over ``k`` in increasing order of the same
products, so integer results are exact and float32 results are those of the plain loop (up to
the compiler's fp-contraction of ``a · b + c`` into an FMA, as for every other float kernel).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import tvm
import tvm_ffi
from tvm import s_tir, tirx
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from ...kernel_tags import ACTIVATION_MATMUL, DEPTHWISE, SCRATCH, VNNI
from ...tir_blocks import SCHEDULE_ERRORS, block_name, blocks_of_kind, loop_extent, root_blocks
from ..kernels import COL_TILE_ATTR, ROW_TILE_ATTR
from .common import (
    PARALLEL_MIN_MACS,
    epilogue_per_tile,
    inline_elementwise,
    parallel_chunks,
    single_kernel_block,
)
from .rule import Kernel
from .symbolic_rows import SymbolicLoops

#: Names of the reduction blocks of TVM's legalized ``matmul`` (Relax ``R.matmul``, topi).
MATMUL_BLOCK = re.compile(r"^(T_|NT_)?matmul(_NT|_NN)?\d*$|^T_batch_matmul(_NT|_NN)?\d*$")
#: Maximum number of vector accumulators in a register tile (of the 32 zmm registers; the
#: rest hold the ``B`` row vectors and the ``A`` broadcasts).
MAX_ACCUMULATORS = 16
#: Schedule kinds (``tvm_qdq.scheduled``): vector multiply-adds; ``vpdpwssd`` on int16 pairs.
KIND = "activation_matmul"
KIND_PAIRS = "activation_matmul_vnni"
#: Vector width in 32-bit lanes (one zmm).
LANES = 16
#: Accumulator dtypes (and operand dtypes) handled.
_ACC_DTYPES = ("int32", "float32")
_OPERAND_DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "float32")


#: ``vpdpwssd`` step on a 16-lane tile (see :func:`_pairs_desc`).
PAIRS_INTRIN = "tvm_qdq_x86_vpdpwssd_s16s16s32_16x2"
_INTERLEAVE = [x for lane in range(16) for x in (lane, lane + 16)]


@T.prim_func(s_tir=True)
def _pairs_desc(a: T.handle, b: T.handle, c: T.handle) -> None:
    """``C[i] += Σ_{t<2} int32(A[t]) · int32(B[t, i])``, ``i < 16``: two consecutive reduction
    steps of one output row vector (``A``: 2 int16 of the left row, ``B``: the two matching
    rows of 16 int16 of the right operand, any row stride; ``C``: int32 accumulators)."""
    s0 = T.int32()
    A = T.match_buffer(a, (2,), "int16", offset_factor=1)
    B = T.match_buffer(b, (2, 16), "int16", offset_factor=1, strides=[s0, 1])
    C = T.match_buffer(c, (16,), "int32", offset_factor=1, scope="local")
    with T.sblock("root"):
        T.reads(C[0:16], A[0:2], B[0:2, 0:16])
        T.writes(C[0:16])
        for i in T.serial(0, 16):
            for t in T.serial(0, 2):
                with T.sblock("update"):
                    vi, vt = T.axis.remap("SR", [i, t])
                    C[vi] = C[vi] + T.cast(A[vt], "int32") * T.cast(B[vt, vi], "int32")


@T.prim_func(s_tir=True)
def _pairs_impl(a: T.handle, b: T.handle, c: T.handle) -> None:
    """One ``vpdpwssd``: the ``A`` pair broadcast as an int32, the two ``B`` rows interleaved
    (lane ``i`` holds ``B[0, i], B[1, i]``). Each lane adds ``A[0]·B[0, i] + A[1]·B[1, i]``
    with int32 wrap-around, i.e. exactly the two int32 multiply-adds it replaces (modulo 2³²,
    as int32 accumulation itself)."""
    s0 = T.int32()
    A = T.match_buffer(a, (2,), "int16", offset_factor=1)
    B = T.match_buffer(b, (2, 16), "int16", offset_factor=1, strides=[s0, 1])
    C = T.match_buffer(c, (16,), "int32", offset_factor=1, scope="local")
    with T.sblock("root"):
        T.reads(C[0:16], A[0:2], B[0:2, 0:16])
        T.writes(C[0:16])
        C[T.ramp(0, 1, 16)] = T.call_llvm_pure_intrin(
            "int32x16", "llvm.x86.avx512.vpdpwssd.512",
            C.vload([0], "int32x16"),
            T.reinterpret("int16x32", T.broadcast(
                T.reinterpret("int32", A.vload([0], "int16x2")), 16)),
            T.Shuffle([B.vload([0, 0], "int16x16"), B.vload([1, 0], "int16x16")], _INTERLEAVE))


TensorIntrin.register(PAIRS_INTRIN, _pairs_desc, _pairs_impl, override=True)


@dataclass(frozen=True)
class MatmulShape:
    """A batched matmul block: ``batch`` extents, ``m × n`` output per batch, reduction ``k``;
    ``b_transposed`` when ``B`` is indexed ``[…, j, k]`` (NT)."""

    batch: tuple[int, ...]
    m: int
    n: int
    k: int
    b_transposed: bool
    dtype: str
    operand_dtypes: tuple[str, str]

    @property
    def macs(self) -> int:
        return math.prod(self.batch) * self.m * self.n * self.k


@dataclass(frozen=True)
class MatmulTile:
    """Register tile: ``mr`` rows × ``nr`` vectors of ``lanes`` columns."""

    mr: int
    nr: int
    lanes: int


def _var_names(expr) -> set[str]:
    """Names of the variables an index expression uses."""
    return {str(v.name) for v in tirx.analysis.undefined_vars(expr)}


def _index_vars(region) -> list[set[str]]:
    return [_var_names(r.min) if int(r.extent) == 1 else {"*"} for r in region.region]


def matmul_shape(sch: s_tir.Schedule, block) -> MatmulShape:
    """The :class:`MatmulShape` of a matmul reduction block; raises ``ValueError`` when the
    block is not a (batched) matmul of two operands with the reduction innermost."""
    node = sch.get(block)
    ivs = list(node.iter_vars)
    kinds = [int(iv.iter_type) for iv in ivs]
    if len(ivs) < 3 or kinds[-1] == 0 or any(kinds[:-1]):
        raise ValueError("not a matmul: expected spatial iterators then one reduction")
    loops = sch.get_loops(block)
    if len(loops) != len(ivs) or any(
            int(sch.get(lp).extent) != int(iv.dom.extent) for lp, iv in zip(loops, ivs,
                                                                          strict=True)):
        raise ValueError("matmul block already scheduled")
    names = [str(iv.var.name) for iv in ivs]
    vi, vj, vk = names[-3], names[-2], names[-1]
    if len(node.writes) != 1:
        raise ValueError("matmul writes several buffers")
    out = node.writes[0].source
    acc_dtype = str(out.dtype)
    if acc_dtype not in _ACC_DTYPES:
        raise ValueError(f"accumulator dtype {acc_dtype}")
    operands = [r for r in node.reads if not r.source.same_as(out)]
    if len(operands) != 2:
        raise ValueError("matmul must read two operands")
    a, b = operands
    if any(str(r.source.dtype) not in _OPERAND_DTYPES for r in (a, b)):
        raise ValueError("operand dtype")
    ia, ib = _index_vars(a), _index_vars(b)
    if len(ia) < 2 or ia[-2:] != [{vi}, {vk}]:
        raise ValueError("A must be indexed [..., i, k]")
    if len(ib) < 2:
        raise ValueError("B must be indexed [..., k, j] or [..., j, k]")
    if ib[-2:] == [{vk}, {vj}]:
        transposed = False
    elif ib[-2:] == [{vj}, {vk}]:
        transposed = True
    else:
        raise ValueError("B must be indexed [..., k, j] or [..., j, k]")
    # Batch dims of the operands: only batch iterators (or broadcast constants).
    batch_names = set(names[:-3])
    for dims in (ia[:-2], ib[:-2]):
        if any(not d <= batch_names for d in dims):
            raise ValueError("operand batch index uses a row/column/reduction iterator")
    ext = [int(iv.dom.extent) for iv in ivs]
    return MatmulShape(tuple(ext[:-3]), ext[-3], ext[-2], ext[-1], transposed, acc_dtype,
                       (str(a.source.dtype), str(b.source.dtype)))


def default_matmul_tile(m: int, n: int) -> MatmulTile:
    """Register tile for an ``m × n`` output: ``lanes`` = 16 when 16 divides ``n`` (else the
    largest of 8, 4 dividing it, else ``n`` itself when ``n ≤ 16``); then ``nr`` vectors (≤ 4,
    dividing) and ``mr`` rows (dividing ``m``) maximizing ``mr · nr ≤`` :data:`MAX_ACCUMULATORS`
    (ties: the squarer tile, fewer loads per multiply-add)."""
    lanes = next((w for w in (LANES, 8, 4) if n % w == 0), n if n <= LANES else 0)
    if lanes == 0:
        raise ValueError(f"no vector width for {n} columns")
    blocks = n // lanes
    best, best_key = MatmulTile(1, 1, lanes), (-1, 0.0)
    for nr in range(1, min(blocks, 4) + 1):
        if blocks % nr:
            continue
        for mr in range(1, min(m, MAX_ACCUMULATORS) + 1):
            if m % mr or mr * nr > MAX_ACCUMULATORS:
                continue
            key = (mr * nr, -(mr + nr) / (mr * nr))
            if key > best_key:
                best, best_key = MatmulTile(mr, nr, lanes), key
    return best


def _matmul_block(sch: s_tir.Schedule):
    blocks = [b for b in root_blocks(sch) if MATMUL_BLOCK.match(block_name(sch, b))
              and any(int(iv.iter_type) != 0 for iv in sch.get(b).iter_vars)]
    if len(blocks) != 1:
        raise ValueError(f"expected one matmul block, found {len(blocks)}")
    return blocks[0]


def pairs_apply(shape: MatmulShape, tile: MatmulTile) -> bool:
    """True when the ``vpdpwssd`` step (:data:`PAIRS_INTRIN`) fits: int16 × int16 → int32,
    an even reduction and 16-lane column vectors."""
    return (shape.operand_dtypes == ("int16", "int16") and shape.dtype == "int32"
            and shape.k % 2 == 0 and tile.lanes == LANES)


def schedule_activation_matmul(func: tirx.PrimFunc, tile: MatmulTile | None = None,
                               parallel: bool | None = None, pairs: bool = False
                               ) -> tirx.PrimFunc:
    """Register-tiled schedule of a batched activation × activation matmul and its fused
    epilogue (see the module docstring). ``tile`` defaults to :func:`default_matmul_tile`,
    ``parallel`` to ``MACs ≥ PARALLEL_MIN_MACS``. ``pairs``: int16 operands, two reduction
    steps per ``vpdpwssd`` (AVX-512 VNNI; raises ``ValueError`` when :func:`pairs_apply` is
    false)."""
    sch = s_tir.Schedule(func)
    main = _matmul_block(sch)
    matmul_name = block_name(sch, main)
    inline_elementwise(sch, keep=lambda s, b: block_name(s, b) == matmul_name)
    main = _matmul_block(sch)
    shape = matmul_shape(sch, main)
    if tile is None:
        tile = default_matmul_tile(shape.m, shape.n)
    if shape.m % tile.mr or shape.n % (tile.nr * tile.lanes):
        raise ValueError(f"tile {tile} does not fit {shape}")
    if pairs and not pairs_apply(shape, tile):
        raise ValueError(f"vpdpwssd does not apply to {shape} / {tile}")
    if parallel is None:
        parallel = shape.macs >= PARALLEL_MIN_MACS

    *batch_loops, li, lj, lk = sch.get_loops(main)
    n_batch = len(batch_loops)
    if parallel:
        # Chunks of the first non-unit batch loop (fused batch loops would leave div/mod
        # bindings that tensorize cannot blockize).
        for loop in batch_loops:
            if loop_extent(sch, loop) > 1:
                parallel_chunks(sch, loop)
                break
    io, ii = sch.split(li, [None, tile.mr])
    jo, jn, jl = sch.split(lj, [None, tile.nr, tile.lanes])
    if pairs:
        lk, lt = sch.split(lk, [None, 2])
        sch.reorder(io, jo, lk, ii, jn, jl, lt)
    else:
        sch.reorder(io, jo, lk, ii, jn, jl)

    if shape.b_transposed:
        # B[..., j, k] → a per-batch K × N copy (unit-stride rows for the j vectors).
        if not n_batch:
            raise ValueError("NT matmul without batch loop")
        packed = sch.cache_read(main, 1, "global")
        sch.compute_at(packed, sch.get_loops(main)[_loop_index(sch, main, io) - 1])
        _vectorize_inner(sch, packed, tile.lanes)
        sch.transform_layout(main, ("read", 1), _swap_last_two(len(sch.get(packed).writes[0]
                                                                   .source.shape)))

    consumers = epilogue_per_tile(sch, main, jo, _dependents(sch, main))

    _register_tile_reduction(sch, main, jl, jn, ii, lk, pairs, tile.lanes)
    for block in consumers:
        _vectorize_inner(sch, block, tile.lanes)
    return sch.mod["main"]


def _register_tile_reduction(sch: s_tir.Schedule, main, jl, jn, ii, lk, pairs: bool,
                             lanes: int, tensorize: bool = True) -> None:
    """The register tile's accumulation: with ``pairs`` the init block split off and the
    lane loop ``jl`` tensorized as ``vpdpwssd`` (unless ``tensorize`` is False: a later
    rewrite must copy the block first), else ``jl`` vectorized while the block is still a
    reduction (the update block alone is not) and the init split off after; the row
    (``ii``) and column-vector (``jn``) loops unrolled, the init vectorized."""
    if pairs:
        init = sch.decompose_reduction(main, lk)
        if tensorize:
            sch.tensorize(jl, PAIRS_INTRIN)
    else:
        sch.vectorize(jl)
    sch.unroll(jn)
    sch.unroll(ii)
    if not pairs:
        init = sch.decompose_reduction(main, lk)
    _vectorize_inner(sch, init, lanes)


def _loop_index(sch: s_tir.Schedule, block, loop) -> int:
    loops = sch.get_loops(block)
    for idx, lp in enumerate(loops):
        if sch.get(lp).same_as(sch.get(loop)):
            return idx
    raise ValueError("loop not found")


def _swap_last_two(rank: int):
    def index_map(*idx):
        return (*idx[:-2], idx[-1], idx[-2])

    if rank < 2:
        raise ValueError("rank < 2")
    return index_map


def _dependents(sch: s_tir.Schedule, main) -> list:
    """The root blocks that (transitively) consume ``main``'s output, in block order."""
    names = {block_name(sch, main)}
    out = []
    for block in root_blocks(sch):
        if any(block_name(sch, p) in names for p in sch.get_producers(block)):
            names.add(block_name(sch, block))
            out.append(block)
    return out


def _vectorize_inner(sch: s_tir.Schedule, block, lanes: int) -> None:
    """Vectorize the innermost loop of ``block`` (split to ``lanes`` when longer)."""
    inner = sch.get_loops(block)[-1]
    extent = loop_extent(sch, inner)
    if extent > lanes and extent % lanes == 0:
        _, inner = sch.split(inner, [None, lanes])
    elif extent > lanes:
        return
    try:
        sch.vectorize(inner)
    except SCHEDULE_ERRORS:
        pass


def schedule_padded_activation_matmul(func: tirx.PrimFunc, parallel: bool | None = None,
                                      pairs: bool = False) -> tirx.PrimFunc:
    """Register-tiled schedule of :func:`..kernels.activation_matmul` (symbolic sizes, rows
    and columns padded to whole tiles by the kernel, so no split has a predicate): tiles of
    its ``row_tile`` rows × ``col_tile`` columns (16-lane vectors), the reduction outside the
    tile, the epilogue per tile; the first static batch loop with more than one iteration
    (e.g. the heads) is parallel, else the row-tile loop. The zero-padded copies are
    vectorized along their last axis. ``pairs``: two reduction steps per ``vpdpwssd``
    (:data:`PAIRS_INTRIN`; int16 operands and an even reduction, ``even_k`` of the kernel;
    else ``ValueError``). A symbolic column count ``n`` (``Q·Kᵀ``): the column-tile loop is
    a main part over ``n // col_tile`` tiles, whose epilogue has no column predicate
    (vectorized), and a tail tile (:class:`.symbolic_rows.SymbolicLoops`) whose epilogue runs
    4-lane vectors and scalars, accumulating (plain multiply-adds) into its own tile."""
    sch = s_tir.Schedule(func)
    main = single_kernel_block(sch, ACTIVATION_MATMUL, "activation matmul")
    annotations = sch.get(main).annotations
    mr, cols = int(annotations[ROW_TILE_ATTR]), int(annotations[COL_TILE_ATTR])
    *batch_loops, li, lj, lk = sch.get_loops(main)
    if pairs and [str(r.source.dtype) for r in sch.get(main).reads][-2:] != ["int16"] * 2:
        raise ValueError("vpdpwssd needs int16 operands")
    io, ii = sch.split(li, [None, mr])
    jo, jn, jl = sch.split(lj, [None, cols // LANES, LANES])
    if pairs:
        lk, lt = sch.split(lk, [None, 2])
        sch.reorder(io, jo, lk, ii, jn, jl, lt)
    else:
        sch.reorder(io, jo, lk, ii, jn, jl)
    if parallel is None:
        parallel = math.prod(_nominal(iv.dom.extent) for iv in sch.get(main).iter_vars) >= \
            PARALLEL_MIN_MACS
    if parallel:
        static = [lp for lp in batch_loops if isinstance(sch.get(lp).extent, tirx.IntImm)
                  and loop_extent(sch, lp) > 1]
        sch.parallel(static[0] if static else io)
    consumers = epilogue_per_tile(sch, main, jo, _dependents(sch, main))
    tails = SymbolicLoops()
    if consumers:
        tails.padded(sch, jo, sch.get(consumers[0]).iter_vars[-1].dom.extent, cols)
    _register_tile_reduction(sch, main, jl, jn, ii, lk, pairs, LANES, tensorize=not tails)
    update = block_name(sch, main) if pairs and tails else None  # tensorized after the rewrite
    for block in consumers:
        _vectorize_inner(sch, block, LANES)
    for block in blocks_of_kind(sch, SCRATCH):
        _, vec = sch.split(sch.get_loops(block)[-1], [None, LANES])
        sch.vectorize(vec)
    if not tails:
        return sch.mod["main"]
    acc = sch.get(main).writes[0].source
    func = _tail_accumulator(tails.apply(sch.mod["main"]), acc)
    if not pairs:
        return func
    # The tail repeats the accumulation of the last column tile: tensorize the main part
    # once the rewrite is done (a tensorized block defines buffers, which a copy cannot).
    sch = s_tir.Schedule(func)
    sch.tensorize(sch.get_loops(sch.get_sblock(update))[-2], PAIRS_INTRIN)
    # The tail's column offset (E // f)·f is no loop variable, which tensorize cannot match:
    # its last column tile accumulates with plain multiply-adds.
    return sch.mod["main"]


def _tail_accumulator(func: tirx.PrimFunc, acc: tirx.Buffer) -> tirx.PrimFunc:
    """``func`` with the blocks of the column tail (``<name>_tail…``) accumulating into a
    buffer of their own, a copy of ``acc``: each part's accesses then stay under its own
    tile loop, so that the accumulators are allocated per tile (registers) rather than
    across every column of a row tile."""
    tail_acc = tirx.decl_buffer(acc.shape, acc.dtype, f"{acc.name}_tail", scope=acc.scope())

    def swap(buffer: tirx.Buffer) -> tirx.Buffer:
        return tail_acc if buffer.same_as(acc) else buffer

    def in_tail(block: s_tir.SBlock) -> s_tir.SBlock:
        if "_tail" not in str(block.name_hint):
            return block
        return tvm_ffi.structural_map(block, (tirx.Buffer, swap))

    body = tvm_ffi.structural_map(func.body.block.body, (s_tir.SBlock, in_tail))
    root = func.body.block
    root = s_tir.SBlock(root.iter_vars, root.reads, root.writes, root.name_hint, body,
                        root.init, [*root.alloc_buffers, tail_acc], root.match_buffers,
                        root.annotations)
    realize = func.body
    return func.with_body(s_tir.SBlockRealize(realize.iter_values, realize.predicate, root))


def _nominal(extent) -> int:
    """A loop extent for cost decisions: its value, or 128 when it is symbolic."""
    return int(extent) if isinstance(extent, tirx.IntImm) else 128


class ActivationMatmulRule:
    """A function with one matmul reduction block (named ``matmul``/``T_matmul``/
    ``NT_matmul``… by TVM's legalization) and no VNNI/depthwise kernel. ``pairs``: the
    ``vpdpwssd`` form, only when the target (see :func:`_target_has_vnni`) has VNNI."""

    def __init__(self, pairs: bool) -> None:
        self.pairs = pairs
        self.kind = KIND_PAIRS if pairs else KIND

    def applies(self, kernel: Kernel) -> bool:
        if ACTIVATION_MATMUL in kernel.kinds:
            return not self.pairs or _target_has_vnni(kernel.target)
        if kernel.kinds & {VNNI, DEPTHWISE}:
            return False
        if sum(1 for n in kernel.block_names if MATMUL_BLOCK.match(n)) != 1:
            return False
        return not self.pairs or _target_has_vnni(kernel.target)

    def apply(self, kernel: Kernel) -> tirx.PrimFunc:
        if ACTIVATION_MATMUL in kernel.kinds:
            return schedule_padded_activation_matmul(kernel.func, pairs=self.pairs)
        return schedule_activation_matmul(kernel.func, pairs=self.pairs)


def _target_has_vnni(target: tvm.target.Target | None = None) -> bool:
    """AVX-512 VNNI on ``target``, else on the current target (``with target:``), else on
    the host's x86 target (the one :func:`tvm_qdq.backend.resolve_target` gives)."""
    from ..intrin import has_vnni, schedule_target

    return has_vnni(schedule_target(target))
