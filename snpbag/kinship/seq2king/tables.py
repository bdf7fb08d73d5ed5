"""The report's data and tables: the Analysis record, connectivity.csv and connectivity.md."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snpbag.kinship.seq2king.inputs import Labels


COLUMNS = ("layer", "head", "inverted", "connectivity", "p_permutation", "level", "chosen", "connectivity_b",
           "p_permutation_b", "p_wilcoxon", "n_queries", "spearman_calibration", "source")


@dataclass
class Analysis:
    """Everything the report files are written from."""

    rows: list[dict]
    info: dict
    layers: list[str]
    n_heads: int
    eval_attention: dict[str, np.ndarray]  # layer -> (S, H, L, L)
    eval_states: dict[str, np.ndarray]  # layer -> (S, L, C)
    eval_kinship: np.ndarray  # (S, L, L) raw
    eval_labels: Labels  # (S, L) arrays
    head_view: dict = field(default_factory=dict)


def fmt(v) -> str:
    if isinstance(v, float):
        return "" if not np.isfinite(v) else f"{v:.4g}"
    return str(v).lower() if isinstance(v, bool) else str(v)


def write_tables(rows: list[dict], directory: Path) -> None:
    """connectivity.csv and connectivity.md (the same rows)."""
    with open(directory / "connectivity.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([fmt(r[c]) for c in COLUMNS])
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    (directory / "connectivity.md").write_text("\n".join(lines) + "\n")
