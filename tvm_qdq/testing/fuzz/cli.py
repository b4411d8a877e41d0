"""``python -m tvm_qdq.testing.fuzz`` (``scripts/fuzz``): a long campaign or replay of specs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .campaign import CampaignStats, run_campaign
from .checking import check_specs
from .spec import KNOWN_BUGS, FuzzConfig, load_spec

DESCRIPTION = "Random valid quantized ONNX graphs (QDQ form), run in ONNX Runtime and in tvm-qdq."


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tvm_qdq.testing.fuzz``: a long campaign, or replay of saved specs.

    SIGTERM or Ctrl-C ends a campaign early with its report (``stats.txt``) all the same."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m tvm_qdq.testing.fuzz",
                                     description=DESCRIPTION)
    parser.add_argument("--graphs", type=int, default=2000, help="graphs to try (default 2000)")
    parser.add_argument("--seed", type=int, default=1, help="campaign seed (default 1)")
    parser.add_argument("--out", default=".cache/fuzz", help="where failures are saved")
    parser.add_argument("--max-ops", type=int, default=4)
    parser.add_argument("--act4", action="store_true", help="also 4-bit activations")
    parser.add_argument("--no-qoperator", dest="qoperator", action="store_false",
                        help="no QOperator forms (QLinearConv / QLinearMatMul; on by default)")
    parser.add_argument("--known-bugs", action="store_true",
                        help=f"also generate features of open bugs {sorted(KNOWN_BUGS)}")
    parser.add_argument("--replay", nargs="*", metavar="SPEC.json",
                        help="check saved specs instead of fuzzing")
    args = parser.parse_args(argv)
    if args.replay:
        bad = 0
        for path in args.replay:
            result = check_specs([load_spec(path)])
            print(f"{path}: {'ok' if result.ok else 'FAIL'}")
            if not result.ok:
                bad += 1
                print(result.summary())
            for note in result.explained:
                print(f"  explained: {note}")
        return 1 if bad else 0
    config = FuzzConfig(max_ops=args.max_ops, act4=args.act4, qoperator=args.qoperator,
                        known_bugs=frozenset() if args.known_bugs else KNOWN_BUGS)
    stats = CampaignStats()

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # a time-boxed campaign (kill <pid>) still reports
    try:
        run_campaign(args.graphs, args.seed, Path(args.out) / f"seed{args.seed}", config,
                     stats=stats)
    except KeyboardInterrupt:
        print(f"stopped after {stats.graphs} graphs")
    print(stats.report())
    (Path(args.out) / f"seed{args.seed}").mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"seed{args.seed}" / "stats.txt").write_text(stats.report() + "\n")
    return 1 if stats.failures or stats.generator_errors else 0
