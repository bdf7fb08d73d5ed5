"""Markdown tables from tools/bench results files (the JSON that tools/bench/_results.py writes).

Each table gets one caption line — the exact command, the commit, the machine and the
date — then its rows, columns in the order the benchmark wrote them:

    python tools/bench/make_tables.py bench-results/bench_king-*.json
    python tools/bench/make_tables.py results.json --table speed --columns tool,threads,wall_s,cpu_s
    python tools/bench/make_tables.py peers.json snpbag.json --combine --group-by setting

``--combine`` puts the rows of several runs of one benchmark (e.g. the peers measured in one
run, snpbag in a later one) in one table per table name, a ``run`` column naming each row's
run and one caption line per run; ``--group-by`` keeps rows with the same value together, and
``--latest tool`` keeps, per group and tool, only the row of the last file that has one (a
rerun supersedes the earlier row).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from snpbag.errors import InputError, SnpbagError

REQUIRED = ("command", "argv", "machine", "commit", "date", "results")


def load(path: Path) -> dict:
    """One results file, checked for the keys every table needs."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read a results file ({e}); pass a JSON file a tools/bench script wrote") from e
    missing = [k for k in REQUIRED if not isinstance(record, dict) or k not in record]
    if missing:
        raise InputError(f"{path}: not a tools/bench results file (missing {', '.join(missing)}); "
                         "write it with tools/bench/_results.py")
    return record


def cell(value, *, digits: int = 4) -> str:
    """One table cell: ints with thousands separators, floats to ``digits`` significant digits."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 10 ** digits else f"{value:.{digits}g}"
    if isinstance(value, (list, tuple)):
        return " ".join(cell(v, digits=digits) for v in value)
    return str(value).replace("|", "\\|")


def caption(record: dict) -> str:
    m = record["machine"] or {}
    where = ", ".join(x for x in (
        f"{m['cores']} cores" if m.get("cores") else None,
        m.get("cpu"),
        f"{m['memory_gib']:g} GiB" if m.get("memory_gib") else None,
        f"GPU {m['gpu']}" if m.get("gpu") else "no GPU",
        f"load {m['load_1min']:g}" if m.get("load_1min") is not None else None,
    ) if x)
    command = " ".join(["tools/bench/" + record["command"] + ".py", *record["argv"]])
    return f"`{command}` — commit `{record['commit'] or 'unknown'}`, {where}, {record['date']}"


def render(record: dict, *, tables: list[str] | None = None, columns: list[str] | None = None,
           digits: int = 4) -> str:
    """The markdown for the named tables of one record (all of them by default)."""
    names = tables or list(record["results"])
    unknown = [n for n in names if n not in record["results"]]
    if unknown:
        raise InputError(f"no table {', '.join(unknown)} in these results (tables: "
                         f"{', '.join(record['results'])}); fix --table")
    parts = []
    for name in names:
        rows = record["results"][name]
        cols = columns or list(dict.fromkeys(k for r in rows for k in r))
        lines = [f"{name}: {caption(record)}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(cell(r.get(c), digits=digits) for c in cols) + " |" for r in rows]
        parts.append("\n".join(lines))
    info = record.get("info")
    if info and not tables:
        parts.append("\n".join(f"- {k}: {cell(v, digits=digits)}" for k, v in info.items()))
    return "\n\n".join(parts) + "\n"


def render_combined(records: list[dict], *, tables: list[str] | None = None, columns: list[str] | None = None,
                    group_by: str | None = None, latest: str | None = None, digits: int = 4) -> str:
    """One table per table name holding the rows of every record, each row's ``run`` the
    number of its record's caption line (rows keep their order, grouped by ``group_by``;
    with ``latest``, one row per (``group_by``, ``latest``) value pair: the last record's)."""
    names = tables or list(dict.fromkeys(n for r in records for n in r["results"]))
    unknown = [n for n in names if not any(n in r["results"] for r in records)]
    if unknown:
        raise InputError(f"no table {', '.join(unknown)} in these results; fix --table")
    parts = []
    for name in names:
        rows = [{"run": i} | row for i, r in enumerate(records, 1) for row in r["results"].get(name, [])]
        if latest:
            last = {(row.get(group_by), row.get(latest)): row["run"] for row in rows}
            rows = [row for row in rows if last[row.get(group_by), row.get(latest)] == row["run"]]
        if group_by:
            first = {v: k for k, v in reversed(list(enumerate(row.get(group_by) for row in rows)))}
            rows.sort(key=lambda row: first[row.get(group_by)])
        cols = columns or list(dict.fromkeys(k for r in rows for k in r))
        used = {row["run"] for row in rows}
        runs = [f"run {i}: {caption(r)}" for i, r in enumerate(records, 1) if i in used]
        lines = [f"{name}:", *(f"- {x}" for x in runs), "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(cell(r.get(c), digits=digits) for c in cols) + " |" for r in rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--table", action="append", help="only this table (repeatable)")
    ap.add_argument("--columns", type=lambda v: v.split(","), help="comma-separated columns, in order")
    ap.add_argument("--digits", type=int, default=4, help="significant digits of floats")
    ap.add_argument("--combine", action="store_true", help="the rows of all files in one table per name")
    ap.add_argument("--group-by", help="with --combine: keep rows with the same value of this column together")
    ap.add_argument("--latest", help="with --combine: per --group-by value and value of this column, only the "
                                     "last file's row")
    a = ap.parse_args(argv)
    try:
        if a.combine:
            out = [render_combined([load(f) for f in a.files], tables=a.table, columns=a.columns,
                                   group_by=a.group_by, latest=a.latest, digits=a.digits)]
        else:
            out = [render(load(f), tables=a.table, columns=a.columns, digits=a.digits) for f in a.files]
    except SnpbagError as e:
        print(f"make_tables: error: {e}", file=sys.stderr)
        return e.exit_code
    print("\n".join(out), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
