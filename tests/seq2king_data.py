"""Synthetic kinship with known group structure for the Seq2KING tests (no simulation needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CONTINENTS = ("AFR", "EUR", "EAS")


def synthetic(n_per_pop: int = 12, *, pops_per_continent: int = 2, seed: int = 0):
    """(ids, kinship matrix, continent, population): within-population > within-continent > between."""
    rng = np.random.default_rng(seed)
    cont, pop = [], []
    for c in CONTINENTS:
        for p in range(pops_per_continent):
            cont += [c] * n_per_pop
            pop += [f"{c}{p}"] * n_per_pop
    cont, pop = np.array(cont), np.array(pop)
    k = np.where(cont[:, None] == cont[None, :], 0.02, -0.12) + np.where(pop[:, None] == pop[None, :], 0.03, 0.0)
    k = k + rng.normal(0, 0.01, k.shape)
    k = (k + k.T) / 2
    np.fill_diagonal(k, 0.5)
    ids = np.array([f"S{i:03d}" for i in range(len(cont))])
    return ids, k, cont, pop


def write_kin0(path: Path, ids, k, *, kinship_column: str = "KINSHIP") -> Path:
    """All pairs in plink2's order (row i against rows < i)."""
    lines = ["\t".join(["#IID1", "IID2", "NSNP", "HETHET", "IBS0", kinship_column, "INFTYPE"])]
    for i in range(len(ids)):
        for j in range(i):
            lines.append(f"{ids[i]}\t{ids[j]}\t1000\t0.1\t0.01\t{k[i, j]:.6g}\tUN")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_labels(path: Path, ids, cont, pop) -> Path:
    path.write_text("sample\tpopulation\tcontinent\n" + "".join(f"{s}\t{p}\t{c}\n" for s, p, c in zip(ids, pop, cont)))
    return path
