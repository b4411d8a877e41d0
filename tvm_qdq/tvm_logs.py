"""TVM's native log lines, routed so that the user sees only what concerns them.

TVM's C++ code writes its warnings straight to the process's standard error (file
descriptor 2), outside Python's ``logging`` and ``warnings``. Some of them are about TVM's
internals and alarm a reader for nothing, e.g. the gather legalization's "Fast mode segfaults
when there are out-of-bounds indices" (tvm-qdq range-checks every index input before a run,
see ``index_bounds.py``), its advice on ``pow`` with exponents ≥ 3, or the "Scope Saving:" /
"Scope Loaded:" trace of module export and load. :func:`routed_tvm_logs` captures
descriptor 2 around a TVM call; afterwards each line that matches a known benign message
goes to the ``tvm_qdq.tvm`` logger at DEBUG level, with the reason it is benign, and every
other line is written back to standard error unchanged, so anything real still reaches the
user.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

LOGGER = logging.getLogger("tvm_qdq.tvm")


@dataclass(frozen=True)
class BenignMessage:
    """A TVM log line that tells a tvm-qdq user nothing actionable, and why."""

    pattern: re.Pattern[str]
    reason: str


BENIGN: tuple[BenignMessage, ...] = (
    BenignMessage(
        re.compile(r"Fast mode segfaults when there are out-of-bounds indices"),
        "gather indices are range-checked by Compiled.run before every call",
    ),
    BenignMessage(
        re.compile(r"Detected pow\(x, y\) where y >= 3"),
        "TVM's advice on its own pow; powf is exact for negative bases with an integer "
        "exponent, as ONNX Pow defines (tests/test_tvm_logs.py)",
    ),
    BenignMessage(
        re.compile(r"Scope (Saving|Loaded):"),
        "trace of the module's memory scopes while exporting or loading",
    ),
)


def benign_reason(line: str) -> str | None:
    """The reason ``line`` is a benign TVM message, or None when the user should see it."""
    for message in BENIGN:
        if message.pattern.search(line):
            return message.reason
    return None


def forward(text: str) -> str:
    """Split captured stderr ``text``: benign lines to the DEBUG log, the rest returned."""
    kept = []
    for line in text.splitlines(keepends=True):
        reason = benign_reason(line)
        if reason is None:
            kept.append(line)
        else:
            LOGGER.debug("TVM: %s (%s)", line.rstrip(), reason)
    return "".join(kept)


@contextmanager
def routed_tvm_logs() -> Iterator[None]:
    """Capture file descriptor 2 for the duration of the block and route what TVM wrote.

    Nested use is fine: the inner block captures into its own file and hands what it keeps
    to the outer one. Output is written back even when the block raises.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no usable descriptor 2 (a detached process): nothing to route
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = forward(capture.read().decode("utf-8", errors="replace"))
            if kept:
                os.write(2, kept.encode("utf-8"))
