"""Background IBD between unrelated pedigree founders: long segments shared per pair of founders of one population.

Founders of ``snpbag simulate --pedigree`` coalesce on the pedigree's map (each autosome's genetic
length over ``--length`` bp) in independent blocks of at most 25 cM; the long IBD that unrelated founders
of one population share there is the background a relatedness caller must see through (ERSA's population
term). This runs the same coalescent (same demography, blocks and rates, no mutations) for each
``--demography`` and counts, from the tree sequence, the true IBD segments (tskit ``ibd_segments``: a
stretch over which two haplotypes keep the same most recent common ancestor) of at least each
``--min-cm`` between the four haplotype pairs of every two founders of a population, summed over the
autosomes: segments per pair of founders and the share of pairs with at least one. With ``--chromosomes K``
< 22 only autosomes 1..K are simulated and the counts per pair are also given scaled to the whole genome
(times 3,870 cM over the simulated cM; blocks are independent, so this is their expectation).

    .venv/bin/python tools/bench/founder_ibd.py --demography ooa,growth --founders 24 --json /tmp/founder_ibd.json
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import _results


def _segments(ts, samples: list[np.ndarray], min_bp: float) -> list[np.ndarray]:
    """Per population: IBD segments longer than ``min_bp`` per pair of individuals (haplotype pairs summed)."""
    out = []
    for s in samples:
        found = ts.ibd_segments(within=s, min_span=min_bp, store_pairs=True)
        ind = {int(n): k // 2 for k, n in enumerate(s)}
        n = len(s) // 2
        counts = np.zeros((n, n), dtype=np.int64)
        for (a, b), seg in found.items():
            i, j = ind[int(a)], ind[int(b)]
            if i != j:
                counts[min(i, j), max(i, j)] += len(seg)
        out.append(counts[np.triu_indices(n, 1)])
    return out


def main() -> None:
    import msprime

    from snpbag.simulate.coalescent import FOUNDER_BLOCK_CM, model_of
    from snpbag.simulate.pedigree import HUMAN_AUTOSOME_CM, recombination_rate

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--demography", default="ooa,growth", help="comma-separated --demography choices")
    p.add_argument("--founders", type=int, default=24, help="founders simulated per population")
    p.add_argument("--chromosomes", type=int, default=22)
    p.add_argument("--length", type=int, default=10_000_000, help="bp per chromosome (as simulate --length)")
    p.add_argument("--min-cm", default="5,10,20", help="segment lengths (cM) to count from")
    p.add_argument("--seed", type=int, default=1)
    _results.add_json_option(p)
    a = p.parse_args()
    cuts = [float(x) for x in a.min_cm.split(",")]
    scale = sum(HUMAN_AUTOSOME_CM) / sum(HUMAN_AUTOSOME_CM[:a.chromosomes])
    rows, seconds = [], {}
    for model in a.demography.split(","):
        dem, _, pops, name = model_of(model)
        t0 = time.process_time()
        totals = {c: [np.zeros(a.founders * (a.founders - 1) // 2, dtype=np.int64) for _ in pops] for c in cuts}
        rng = np.random.default_rng([a.seed, len(model)])
        for cm in HUMAN_AUTOSOME_CM[:a.chromosomes]:
            rate = recombination_rate(a.length, cm)
            blocks = max(1, math.ceil(cm / FOUNDER_BLOCK_CM))
            for _ in range(blocks):
                bp = round(a.length / blocks)
                ts = msprime.sim_ancestry(samples={q: a.founders for q, _ in pops}, demography=dem,
                                          sequence_length=bp, recombination_rate=rate,
                                          random_seed=int(rng.integers(1, 2**31)))
                samples = [ts.samples(population=dem[q].id) for q, _ in pops]
                for c in cuts:
                    for total, got in zip(totals[c], _segments(ts, samples, c / 100 / rate)):
                        total += got
        seconds[model] = time.process_time() - t0
        for (q, _), k in zip(pops, range(len(pops))):
            row = {"demography": model, "model": name, "population": q, "pairs": len(totals[cuts[0]][k])}
            for c in cuts:
                row[f"per_pair_ge{c:g}cM"] = float(totals[c][k].mean())
                row[f"genome_per_pair_ge{c:g}cM"] = float(totals[c][k].mean() * scale)
                row[f"share_with_ge{c:g}cM"] = float((totals[c][k] > 0).mean())
            rows.append(row)
            print("  ".join(f"{k2} {v:.4g}" if isinstance(v, float) else f"{k2} {v}" for k2, v in row.items()),
                  flush=True)
    _results.write(a.json, command="founder_ibd", results={"founder_ibd": rows}, info={
        "founders_per_population": a.founders, "chromosomes": a.chromosomes, "length": a.length,
        "simulated_cm": round(sum(HUMAN_AUTOSOME_CM[:a.chromosomes]), 1), "block_cm": FOUNDER_BLOCK_CM, **{f"cpu_seconds_{m}": round(s, 1) for m, s in seconds.items()}})


if __name__ == "__main__":
    main()
