"""``snpbag relate``'s pair table (``PREFIX.rel``) and its log: columns, rows, the relatives' bounds.

One home for the table's layout (docs/relatedness.md, "The pair table"): :mod:`snpbag.inference.relate`
scores the pairs and hands each block here; the rows are written first as the pairs' own calls, then
copied once the relatives' bounds (:mod:`snpbag.kinship.relatives`) are known, since a bound can reach a
pair scored in any block.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snpbag.kinship import degrees
from snpbag.kinship.estimators import kinship

#: Degrees named per pair, most probable first (TOP1..TOP3 and their probabilities).
TOP = 3


def columns(max_degree: int, *, segments: bool = False) -> list[str]:
    """The header of ``snpbag relate``'s table (with ``segments``: the shared segments' count and total cM)."""
    from snpbag.model.relate import SUBTYPES

    return (["#IID1", "IID2", "NSNP", "HETHET", "IBS0", "KINSHIP", "DEGREE", "PO_FS", "P_PO", "D2_TYPE"]
            + [f"P_{t}" for t in SUBTYPES] + [f"{c}{k}" for k in range(1, TOP + 1) for c in ("TOP", "P_TOP")]
            + [f"P_{d}" for d in range(1, max_degree + 1)] + ["P_UN", "EXP_KINSHIP", "CONFIDENCE"]
            + (["SEGMENTS", "SHARED_CM"] if segments else []) + ["PAIR_DEGREE", "VIA"])


def top_degrees(pd: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) column indices of ``degree_probabilities`` output, most probable first (ties: the
    closer degree first), and their probabilities."""
    order = np.argsort(-pd, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(pd, order, axis=1)


def po_probability(totals: np.ndarray | None, p: np.ndarray, expected_ibs0: float) -> np.ndarray:
    """P(parent–offspring | degree 1) of each pair the classifier scored (NaN elsewhere): from the pair's
    opposite homozygotes (:func:`snpbag.kinship.degrees.po_probability`, KING's rule) where genotypes were
    counted (``totals``: the KING counts summed over patches), else the classifier's. A parent and child share an allele at every site, so IBS0 tells them
    from full siblings on any cohort; the classifier's PO/FS read of the patch counts did not carry over to
    other founders (called 256 of 348 held-out parent–offspring pairs full siblings on one seed,
    docs/benchmarks.md)."""
    if totals is None:
        return p[:, 0] / np.maximum(p[:, 0] + p[:, 1], 1e-12)
    return np.where(np.isnan(p[:, 0]), np.nan, degrees.po_probability(totals[:, 1], totals[:, 4], expected_ibs0))


def write_rows(fh, ids, pairs, counts, p, p_sub, pd, exp_k, calls, names, expected_ibs0: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Write the .rel rows of one block of pairs, up to SHARED_CM (the pair's own call as DEGREE); returns each
    pair's called class and P(parent–offspring | degree 1) (:func:`po_probability`)."""
    from snpbag.model.relate import SUBTYPES

    ranked, ranked_p = top_degrees(pd, TOP)
    call = ranked[:, 0]
    t = None if counts is None else counts.sum(axis=1, dtype=np.int64)
    p_po = po_probability(t, p, expected_ibs0)
    if t is not None:
        king = [f"{k:.6g}" for k in kinship(t[:, 0], t[:, 1], t[:, 2], t[:, 3])]
        king_counts = [[str(r[4]), str(r[0]), str(r[1])] for r in t]
    else:  # embeddings only: no genotypes to count
        king, king_counts = ["NA"] * len(pairs), [["NA"] * 3] * len(pairs)
    for r in range(len(pairs)):
        i, j = pairs[r]
        po = p_po[r]
        row = [ids[i], ids[j], *king_counts[r], king[r], names[call[r]],
               ("PO" if po >= 0.5 else "FS") if call[r] == 0 else "NA", prob(po),
               SUBTYPES[int(p_sub[r].argmax())] if call[r] == 1 else "NA", *(prob(q) for q in p_sub[r])]
        row += [x for c, q in zip(ranked[r], ranked_p[r]) for x in (names[c], f"{q:.4f}")]
        row += [f"{v:.4f}" for v in pd[r]] + [f"{exp_k[r]:.6f}", f"{pd[r, call[r]]:.4f}"]
        if calls is not None:
            row += [str(calls.segments[r]), f"{calls.shared_cm[r]:.2f}"]
        fh.write("\t".join(row) + "\n")
    return call, p_po


def write_final(fh, rows: Path, own: np.ndarray, lifted, ids, names, max_degree: int | None, head: list[str]
                ) -> np.ndarray:
    """Write the header ``head`` (:func:`columns`), then copy the scored pairs' ``rows`` with DEGREE bounded by
    the relatives (PAIR_DEGREE the pair's own call, VIA the parent whose call bounds it, or ``.``), keeping
    those called at ``max_degree`` or closer, then a row for each bounded pair that was not scored (evidence
    columns NA). Returns every pair's final class index, scored pairs first."""
    fh.write("\t".join(head) + "\n")
    col = head.index("DEGREE")
    final, via = own.astype(np.int64), {}
    new = np.zeros(0, np.int64)
    if lifted is not None:
        for k in np.flatnonzero(lifted.scored >= 0):
            final[lifted.scored[k]] = lifted.degree[k] - 1
            via[int(lifted.scored[k])] = ids[lifted.via[k]]
        new = np.flatnonzero(lifted.scored < 0)
    keep = (lambda c: True) if max_degree is None else (lambda c: c < max_degree)
    with open(rows) as src:
        for r, line in enumerate(src):
            if keep(final[r]):
                f = line.rstrip("\n").split("\t")
                f[col] = names[final[r]]
                fh.write("\t".join(f + [names[own[r]], via.get(r, ".")]) + "\n")
    for k in new:
        c = int(lifted.degree[k]) - 1
        if keep(c):
            i, j = lifted.pairs[k]
            f = [ids[i], ids[j]] + ["NA"] * (len(head) - 3) + [ids[lifted.via[k]]]
            f[col] = names[c]
            fh.write("\t".join(f) + "\n")
    return np.concatenate([final, lifted.degree[new] - 1]) if lifted is not None else final


def prob(q: float) -> str:
    """A probability column: NA where the classifier did not score the pair."""
    return "NA" if np.isnan(q) else f"{q:.4f}"


def log_text(input, considered: int, written: int, per_degree: dict[str, int], prefilter: str, calls,
             prefilter_seconds: float | None, lifted=None) -> str:
    lines = [f"input\t{input}", f"pairs_scored\t{considered}", f"pairs_written\t{written}", f"prefilter\t{prefilter}"]
    if prefilter_seconds is not None:
        lines.append(f"prefilter_seconds\t{prefilter_seconds:.1f}")
    if calls is not None:
        lines += [f"segments\t{calls.detector}", f"background\t{calls.background}"]
    if lifted is not None:
        lines += [f"relatives_parents_found\t{len(lifted.parents)}",
                  f"relatives_bounded_scored\t{int((lifted.scored >= 0).sum())}",
                  f"relatives_bounded_unscored\t{int((lifted.scored < 0).sum())}"]
    lines += [f"degree_{k}\t{v}" for k, v in per_degree.items()]
    return "\n".join(lines) + "\n"
