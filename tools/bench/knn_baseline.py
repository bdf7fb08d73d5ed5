"""A k-nearest-genomes predictor: how much a masked genotype can be known without a model.

For each held-out genome and each hidden site, the K training genomes closest to it on
the visible sites within ``--span`` sites either side (sum of |dosage difference|,
:class:`snpbag.retrieval.genomes.NeighbourPanel`) vote for the hidden genotype, smoothed
towards the site's Hardy-Weinberg prior (``alpha`` pseudo-genomes); the guess is the most
probable genotype. No training, no
phasing: a floor for what the encoder should learn from the same panel, and a way to
tell "the information is not there" from "the model does not learn it" (the 1-2 % MAF
bin, docs/benchmarks.md). ``--visible`` 0.1 is the pretraining bar's 90 % masking (a new
random pattern per genome); ``--array`` 0.2 hides the same 80 % of sites in every genome,
as an imputation array does.

    .venv/bin/python tools/bench/knn_baseline.py --store demo_out/cohort.zarr --visible 0.1
    .venv/bin/python tools/bench/knn_baseline.py --store demo_out/cohort.zarr --array 0.2

The split is the datamodule's (``--val-fraction``, ``--seed``), so the held-out genomes
are those the demo validates on.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import _results

BINS = [(0.01, 0.02), (0.02, 0.05), (0.05, 0.1), (0.1, 0.2), (0.2, 0.51)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", default="demo_out/cohort.zarr")
    p.add_argument("--visible", type=float, default=0.1, help="fraction of sites visible, a new pattern per genome")
    p.add_argument("--array", type=float, default=None, help="fraction of sites visible, one pattern for all")
    p.add_argument("--span", type=int, default=128, help="sites either side (model.retrieval_span)")
    p.add_argument("-k", type=int, default=20)
    p.add_argument("--alpha", type=float, default=5.0)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    _results.add_json_option(p)
    a = p.parse_args()

    from snpbag.data.datamodule import split_samples
    from snpbag.retrieval.genomes import NeighbourPanel
    from snpbag.store.genotypes import open_store

    t0 = time.perf_counter()
    st = open_store(a.store)
    g_all = np.concatenate([st.read_dosage(c) for c in range(st.vocab.n_tiles)], axis=1)
    train, val = split_samples(g_all.shape[0], val_fraction=a.val_fraction, seed=a.seed)
    panel, held = g_all[train], g_all[val]
    called = panel >= 0
    af = np.clip(np.where(called, panel, 0).sum(0) / (2 * called.sum(0)), 1e-6, 1 - 1e-6)
    maf = np.minimum(af, 1 - af)
    prior = np.stack([(1 - af) ** 2, 2 * af * (1 - af), af ** 2], axis=1)
    base = prior.argmax(axis=1)
    rng = np.random.default_rng(a.seed + 1)
    L = panel.shape[1]
    fixed = rng.random(L) < a.array if a.array is not None else None
    nb = NeighbourPanel(panel, span=a.span, k=a.k)
    tally = {b: np.zeros(3, dtype=np.int64) for b in BINS}  # hidden calls, kNN right, AF right
    for g in held:
        vis = fixed if fixed is not None else rng.random(L) < a.visible
        votes = nb.votes(np.where(vis, g, -1), np.arange(L)) * nb.k  # counts among the k voters
        for s in np.flatnonzero(~vis & (g >= 0)):
            b = next((b for b in BINS if b[0] <= maf[s] < b[1]), None)
            if b is None:
                continue
            c = votes[s]
            guess = int(np.argmax((c + a.alpha * prior[s]) / (c.sum() + a.alpha)))
            tally[b] += (1, guess == g[s], base[s] == g[s])
    what = f"array {a.array:.0%} visible" if fixed is not None else f"{a.visible:.0%} visible per genome"
    print(f"{a.store}: {panel.shape[0]} panel / {held.shape[0]} held-out genomes, {L} sites, {what}, "
          f"span ±{a.span}, k {a.k}, alpha {a.alpha} ({time.perf_counter() - t0:.0f} s)")
    print("| MAF bin | hidden calls | kNN | AF baseline | gain |\n|---|---:|---:|---:|---:|")
    tot = np.zeros(3, dtype=np.int64)
    rows = []
    for (lo, hi), (n, right, af_right) in tally.items():
        tot += (n, right, af_right)
        rows.append({"maf_bin": f"{lo:.0%}–{hi:.0%}", "hidden_calls": int(n), "knn": right / n,
                     "af_baseline": af_right / n, "gain": (right - af_right) / n})
        print(f"| {lo:.0%}–{hi:.0%} | {n} | {right / n:.4f} | {af_right / n:.4f} | {(right - af_right) / n:+.4f} |")
    n, right, af_right = tot
    print(f"| all (≥1 %) | {n} | {right / n:.4f} | {af_right / n:.4f} | {(right - af_right) / n:+.4f} |")
    rows.append({"maf_bin": "all (≥1 %)", "hidden_calls": int(n), "knn": right / n, "af_baseline": af_right / n,
                 "gain": (right - af_right) / n})
    _results.write(a.json, command="knn_baseline", results={"knn": rows},
                   info={"visible": what, "window": a.window, "k": a.k, "alpha": a.alpha,
                         "panel_genomes": panel.shape[0], "held_out_genomes": held.shape[0], "sites": L})


if __name__ == "__main__":
    main()
