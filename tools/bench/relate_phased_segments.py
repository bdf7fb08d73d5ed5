"""Haplotype IBD segments of the held-out pairs on true and on statistically phased haplotypes, per degree.

What phase errors do to :mod:`snpbag.kinship.hapibd`'s input, on the chromosomes every given VCF holds
(phasing a whole simulation costs thousands of CPU seconds; one chromosome shows the effect): for
each ``--phased NAME=VCF`` (the same genotypes phased by ``snpbag phase``, Beagle, ...) and the
simulation's own true phase, the switch error rate against the truth, and per true degree group the
mean number of segments of at least each ``--thresholds`` t cM per pair and their mean total length,
with segments joined across gaps of up to each ``--max-gaps`` cM free of opposite homozygotes.

    .venv/bin/python tools/bench/relate_phased_segments.py --workdir /tmp/relfix \\
        --phased snpbag=/tmp/deg8/phase/t21.vcf.gz --phased beagle=/tmp/deg8/phase/b21.vcf.gz \\
        --max-gaps 0,1,2 --json /tmp/deg8/segments21.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import _results

GROUPS = (("1-3", 1, 3), ("4-6", 4, 6), ("7-8", 7, 8), ("9-12", 9, 12))


def _switch_error(truth: np.ndarray, phased: np.ndarray) -> tuple[int, int]:
    """Switches and consecutive heterozygote pairs over all samples: haplotypes int8 (v, n, 2)."""
    switches = pairs = 0
    for s in range(truth.shape[1]):
        het = (truth[:, s, 0] != truth[:, s, 1]) & (truth[:, s] >= 0).all(axis=1)
        same = truth[het, s, 0] == phased[het, s, 0]
        switches += int(np.sum(same[1:] != same[:-1]))
        pairs += max(int(het.sum()) - 1, 0)
    return switches, pairs


def main() -> None:
    from snpbag.eval.relate import UNRELATED
    from snpbag.inference import relate as rel
    from snpbag.kinship.hapibd import hap_ibd_segments
    from snpbag.kinship.segments import read_genome
    from snpbag.simulate.pedigree import simulation_genetic_map

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/relfix"), help="a relate_vs_king.py work directory")
    p.add_argument("--setting", default="array", choices=("array", "sequence"))
    p.add_argument("--phased", action="append", default=[], help="NAME=VCF: the held-out genotypes phased")
    p.add_argument("--thresholds", default="3,5,10", help="segment lengths counted (cM)")
    p.add_argument("--max-gaps", default="0,1", help="hap-IBD gap joining (cM), each a row")
    p.add_argument("--max-degree", type=int, default=12)
    p.add_argument("--seed", type=int, default=1, help="relate_vs_king.py's --seed")
    _results.add_json_option(p)
    a = p.parse_args()
    thresholds = [float(x) for x in a.thresholds.split(",")]
    gaps = [float(x) for x in a.max_gaps.split(",")]
    sim = a.workdir / "sim" / "test"
    vcf = sim / ("pedigree_array.vcf.gz" if a.setting == "array" else "pedigree.vcf.gz")
    data = rel.pedigree_pairs(a.workdir / a.setting / "test", max_degree=a.max_degree, patch_sites=128,
                              unrelated_per_related=1.0, seed=a.seed + 100, counts=False)
    gmap = simulation_genetic_map(sim)
    inputs = {"true": read_genome(vcf, gmap, haplotypes=True)}
    for item in a.phased:
        name, _, path = item.partition("=")
        if not path:
            p.error(f"--phased {item!r}: expected NAME=VCF")
        inputs[name] = read_genome(path, gmap, haplotypes=True)
    shared = set.intersection(*(set(g.chromosomes) for g in inputs.values()))
    inputs = {k: g.only(shared) for k, g in inputs.items()}
    for k, g in inputs.items():
        if g.ids != data.ids or g.cm.shape != inputs["true"].cm.shape:
            p.error(f"--phased {k}: not the held-out samples and sites of {vcf}")
    degree = rel.degrees_of_classes(data.y, a.max_degree)
    rows_pop = [x.split("\t") for x in (sim / "samples.tsv").read_text().splitlines()[1:]]
    pop = np.array([dict((r[0], r[1]) for r in rows_pop)[s] for s in data.ids])
    one_pop = pop[data.pairs[:, 0]] == pop[data.pairs[:, 1]]
    groups = [(n, (degree >= lo) & (degree <= hi)) for n, lo, hi in GROUPS] + [
        ("UN", degree == UNRELATED), ("UN one population", (degree == UNRELATED) & one_pop)]
    rows = []
    for name, g in inputs.items():
        sw, hp = _switch_error(inputs["true"].haplotypes, g.haplotypes)
        for gap in gaps:
            segs = hap_ibd_segments(g, data.pairs, min_cm=min(thresholds), max_gap=gap)
            lengths = [segs.lengths(k) for k in range(segs.n_pairs)]
            for gname, m in groups:
                idx = np.flatnonzero(m)
                row = {"input": name, "switch_error": round(sw / max(hp, 1), 5), "max_gap_cm": gap,
                       "degrees": gname, "pairs": int(idx.size)}
                for t in thresholds:
                    row[f"segments_ge{t:g}"] = round(float(np.mean([(lengths[k] >= t).sum() for k in idx])), 3)
                row[f"total_cm_ge{min(thresholds):g}"] = round(float(np.mean([lengths[k].sum() for k in idx])), 2)
                rows.append(row)
                print(" ".join(f"{k}={v}" for k, v in row.items()))
    _results.write(a.json, command="relate_phased_segments", results={"segments": rows},
                   info={"chromosomes": sorted(shared, key=int), "genome_cm": round(float(
                       inputs["true"].chromosome_cm.sum()), 1), "variants": int(inputs["true"].cm.size),
                         "phased": a.phased})


if __name__ == "__main__":
    main()
