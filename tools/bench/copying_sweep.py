"""The haplotype-copying model alone (snpbag.retrieval.haplotypes) on held-out array targets.

Scores :class:`~snpbag.retrieval.haplotypes.HaplotypePanel` directly, without an encoder or a
VCF, for a quick sweep of its settings (K states, block, margin, Ne) on the data of
tools/bench/impute_vs_peers.py: every store genome in the panel, the first ``--targets``
truth genomes shown only their array sites, scored on the other vocabulary sites.
Concordance is the argmax genotype; r² is over all (target, site) dosages of a MAF bin.

    python tools/bench/copying_sweep.py --workdir /tmp/ib --states 96 --block 128 --margin 64
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import _results

BINS = [(0.01, 0.02), (0.02, 0.05), (0.05, 0.1), (0.1, 0.2), (0.2, 0.51)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, required=True, help="impute_vs_peers work folder (ref.zarr, sim/)")
    ap.add_argument("--density", type=float, default=0.2, help="array density (20 %% sites thinned as the bench does)")
    ap.add_argument("--targets", type=int, default=20)
    ap.add_argument("--states", type=int, default=96)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--margin", type=int, default=128)
    ap.add_argument("--ne", type=float, default=1e5)
    ap.add_argument("--selection", default="conflicts", help="state selection: conflicts | composite")
    _results.add_json_option(ap)
    a = ap.parse_args()

    from snpbag.retrieval.haplotypes import HaplotypePanel
    from snpbag.store.genotypes import open_store
    from snpbag.eval.compare import read_truth

    st = open_store(a.workdir / "ref.zarr")
    pos = np.asarray(st.variant_position)[st.vocab.variant]
    panel = HaplotypePanel.from_store(st, np.arange(st.n_samples), states=a.states, block=a.block,
                                      margin=a.margin, ne=a.ne, selection=a.selection)
    keys, truth, _ = read_truth(a.workdir / "sim" / "targets.vcf.gz")
    row = {k[1]: i for i, k in enumerate(keys)}
    T = truth[[row[int(p)] for p in pos]].T[:a.targets]  # targets x vocabulary sites
    array = [int(ln.split("\t")[1]) for ln in (a.workdir / "sim" / "array_sites.tsv").read_text().splitlines()[1:]]
    array = set(array[::max(1, round(0.2 / a.density))])
    on = np.array([int(p) in array for p in pos])
    af = panel.by_site.mean(1)
    maf = np.minimum(af, 1 - af)
    t0 = time.perf_counter()
    gp = panel.votes(np.where(on[None], T, 4).astype(np.int8), np.arange(pos.size))
    seconds = time.perf_counter() - t0
    call, ds = gp.argmax(-1), gp[..., 1] + 2 * gp[..., 2]
    ev = ~on
    setting = {"states": a.states, "block": a.block, "margin": a.margin, "ne": a.ne, "density": a.density,
               "selection": a.selection}
    rows = [{"maf_bin": "all", **setting, "targets": a.targets, "seconds": seconds,
             "concordance": np.mean(call[:, ev] == T[:, ev])}]
    print(f"{a.selection} K={a.states} block={a.block} margin={a.margin} ne={a.ne:g} density={a.density:g}: {a.targets} targets "
          f"in {seconds:.1f} s; concordance {np.mean(call[:, ev] == T[:, ev]):.4f}")
    for lo, hi in BINS:
        s = ev & (maf >= lo) & (maf < hi)
        t, d = T[:, s].ravel(), ds[:, s].ravel()
        rows.append({"maf_bin": f"{lo:g}-{hi:g}", **setting, "concordance": np.mean(call[:, s].ravel() == t),
                     "r2": np.corrcoef(t, d)[0, 1] ** 2})
        print(f"  MAF {lo:g}-{hi:g}: concordance {np.mean(call[:, s].ravel() == t):.4f} r2 "
              f"{np.corrcoef(t, d)[0, 1] ** 2:.4f}")
    _results.write(a.json, command="copying_sweep", results={"copying": rows})


if __name__ == "__main__":
    main()
