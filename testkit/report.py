"""How the benchmarks report: a table on stdout and the full results as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def report(rows: Sequence[tuple[str, str, str]], results: dict[str, Any], out: str | Path) -> Path:
    """Print ``rows`` (what, figure, note) as a table and write ``results`` to ``out``."""
    w = max(len(r[0]) for r in rows)
    print()
    for name, value, note in rows:
        print(f"{name:<{w}}  {value:>10}  {note}")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(f"\nwritten {path}")
    return path
