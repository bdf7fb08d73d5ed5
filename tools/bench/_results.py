"""The one results format of tools/bench: every benchmark writes a JSON file
``{command, argv, machine, commit, date, results[, info]}`` that make_tables.py turns into
the tables of docs/benchmarks.md, so a table is never typed by hand.

``results`` maps a table name to its rows (flat dicts, one per table row; keys are the
columns in order); ``info`` holds the run's scalar facts (sizes, "output identical: yes"); ``detail`` anything
nested that a table does not show.
Without ``--json PATH`` a run writes ``bench-results/COMMAND-YYYYmmdd-HHMMSS.json`` under
the current directory (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = Path("bench-results")
KEYS = ("command", "argv", "machine", "commit", "date", "results")


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """``--json PATH``: where the results go (default: bench-results/COMMAND-TIMESTAMP.json)."""
    parser.add_argument("--json", type=Path, default=None,
                        help=f"write the results here (default: {DEFAULT_DIR}/COMMAND-TIMESTAMP.json)")


def _run(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def commit() -> str | None:
    """The checkout's short revision, with ``+dirty`` when tracked files differ from it."""
    rev = _run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    if rev is None:
        return None
    dirty = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD"], capture_output=True).returncode
    return rev + ("+dirty" if dirty else "")


def machine() -> dict:
    """What the numbers depend on: CPU, cores, memory, GPU, Python, load when written."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = None
    if shutil.which("nvidia-smi"):
        gpu = _run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]) or None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        mem_gib = None
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib, "gpu": gpu,
            "python": platform.python_version(), "load_1min": round(os.getloadavg()[0], 2)}


def _finite(value):
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _finite(value.tolist())
    return value


def write(path: Path | None, *, command: str, results: dict[str, list[dict]], info: dict | None = None,
          detail: dict | None = None, argv: list[str] | None = None) -> Path:
    """Write one run's results; returns the path written (printed to stderr as well).

    ``detail``: anything else worth keeping that is not a table (nested per-tool scores);
    stored as is, never rendered."""
    now = dt.datetime.now(dt.timezone.utc)
    if path is None:
        path = DEFAULT_DIR / f"{command}-{now:%Y%m%d-%H%M%S}.json"
    record = {"command": command, "argv": list(sys.argv[1:] if argv is None else argv), "machine": machine(),
              "commit": commit(), "date": now.isoformat(timespec="seconds"), "results": _finite(results)}
    if info:
        record["info"] = _finite(info)
    if detail:
        record["detail"] = _finite(detail)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(f"results: {path}", file=sys.stderr)
    return path
