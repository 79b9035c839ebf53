"""Chaos run (issue: proof under faults and attack): a county on one machine, under a
steady badge load, with faults injected at random (seeded) moments; then every event is
accounted for, every decision re-checked, memory, files, crashes and privacy judged.

    scripts/chaos [--short | --size full|short] [--seed N] [--workdir DIR] [--out FILE] [--keep] [--markdown F]
                  [--nodes 3 --store postgres]

Full size takes about 12-15 minutes on a 2-core machine, --short about 2-3. The seed is
printed; the same seed gives the same county and the same fault plan (the machine's timing
decides the rest). ``--nodes 3 --store postgres`` is the multi-node variant
(testkit.chaos_nodes): three hub nodes on a temporary PostgreSQL, nodes SIGKILLed (the
leader too, also mid-publish), PostgreSQL restarted once. Needs root for the disk-full
fault (a small tmpfs); without it that fault is skipped and the report says so. Exit status
0 when every verdict holds, 1 if not.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

from testkit.chaos import SIZES
from testkit.chaos_run import run_chaos, table
from testkit.report import report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/chaos", description=(__doc__ or "").split("\n\n")[0].replace("\n", " "))
    p.add_argument("--size", choices=sorted(SIZES), default="full")
    p.add_argument("--short", action="store_const", const="short", dest="size", help="the 2-3 minute variant")
    p.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    p.add_argument("--workdir", type=Path, default=None, help="default: a new directory under /tmp")
    p.add_argument("--out", type=Path, default=None, help="JSON report (default: bench-results/chaos_SIZE.json)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases) after a pass")
    p.add_argument("--quiet", action="store_true", help="no progress lines, only the table")
    p.add_argument("--nodes", type=int, default=1, help="hub nodes (more than 1: the multi-node variant)")
    p.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite",
                   help="the hub's store (postgres: a temporary PostgreSQL; several nodes need it)")
    p.add_argument("--markdown", type=Path, default=None, help="also write the table as Markdown (for the docs)")
    args = p.parse_args(argv)
    if (args.nodes > 1) != (args.store == "postgres") or args.nodes < 1:
        p.error("several nodes run on PostgreSQL: --nodes N (N > 1) goes with --store postgres, and only with it")
    seed = args.seed if args.seed is not None else secrets.randbelow(10**6)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"torwart-chaos-{args.size}-"))
    print(f"chaos: size {args.size}, seed {seed} (rerun with --seed {seed}), work directory {workdir}", flush=True)
    os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")
    result = run_chaos(workdir, SIZES[args.size], seed, echo=not args.quiet, nodes=args.nodes)
    rows = table(result)
    out = args.out or Path("bench-results") / f"chaos_{result['size']}.json"
    report(rows, result, out)
    if args.markdown is not None:
        lines = ["| what | figure | verdict / note |", "| --- | --- | --- |"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
        args.markdown.write_text("\n".join(lines) + "\n")
    if result["ok"] and not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"work directory kept: {workdir}")
    if not result["ok"]:
        print("failed verdicts: " + json.dumps([k for k, v in result["verdicts"].items() if not v]))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
