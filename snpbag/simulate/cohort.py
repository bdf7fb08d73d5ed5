"""Simulated human cohorts: msprime under a published demography, written as phased VCF.

Every test, demo and benchmark of snpbag needs genotypes with known truth: the
full-sequence genotypes behind an array (imputation), held-out targets, relatives
of known degree (kinship). :func:`simulate` writes them with the same layout a user
gets from real data: bgzipped, tabix-indexed, phased, biallelic SNPs.

The genotypes come from :mod:`snpbag.simulate.coalescent` (the demographic models,
msprime, the VCF text); this module lays out the cohort: reference and target
samples, array site lists, pedigrees of known degree, the stores and
``simulation.json``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snpbag.errors import InputError
from snpbag.fileio import atomic_output
from snpbag.io.chrom import chrom_key, is_autosome
from snpbag.provenance import provenance
from snpbag.simulate import finescale
from snpbag.simulate import pedigree as ped
from snpbag.simulate import recmap
from snpbag.simulate.coalescent import (
    BASE_FREQUENCIES,
    DEMOGRAPHIES,
    FOUNDER_MAPS,
    HKY_KAPPA,
    MUTATION_RATE,
    RECOMBINATION_RATE,
    Haplotypes,
    model_of,
    simulate_founders,
    simulate_haplotypes,
    write_vcf,
)

log = logging.getLogger(__name__)

ARRAY_MIN_MAF = 0.05
#: ``--demography`` choices for pedigree founders: the published out-of-Africa model and the one with
#: explosive recent growth and an admixed population (the classification and phasing models are for cohorts).
PEDIGREE_DEMOGRAPHIES = ("ooa", "growth")
#: ``--array-fraction`` is a fraction of the sites with MAF >= this (the default model vocabulary),
#: as an array's coverage is quoted against the common SNPs it is imputed to.
VOCAB_MIN_MAF = 0.01


# --- array sites and target split ----------------------------------------------------------


def select_array_sites(haps: Haplotypes, n_sites: int, *, min_maf: float = ARRAY_MIN_MAF) -> np.ndarray:
    """Indices of ``n_sites`` common sites (MAF >= ``min_maf``) spread evenly along the chromosome.

    The chromosome is cut into ``n_sites`` equal intervals and the common site nearest
    each interval's centre is taken (as array designs space their probes); intervals
    with no common site are made up from the remaining common sites, evenly by rank.

    Raises
    ------
    InputError
        Fewer than ``n_sites`` common sites.
    """
    af = haps.alt_frequency()
    common = np.flatnonzero(np.minimum(af, 1 - af) >= min_maf)
    if n_sites > len(common):
        raise InputError(
            f"--array-fraction asks for {n_sites} array sites on {haps.chrom} but only {len(common)} have "
            f"MAF >= {min_maf}; lower --array-fraction or raise --length/--samples-per-pop"
        )
    pos = haps.positions[common].astype(np.float64)
    centres = (np.arange(n_sites) + 0.5) * haps.length / n_sites
    right = np.clip(np.searchsorted(pos, centres), 0, len(pos) - 1)
    left = np.clip(right - 1, 0, len(pos) - 1)
    nearest = np.where(np.abs(pos[left] - centres) <= np.abs(pos[right] - centres), left, right)
    chosen = np.unique(nearest)
    if len(chosen) < n_sites:
        rest = np.setdiff1d(np.arange(len(common)), chosen)
        extra = rest[np.round(np.linspace(0, len(rest) - 1, n_sites - len(chosen))).astype(int)]
        chosen = np.union1d(chosen, extra)
    assert len(chosen) == n_sites
    return common[chosen]


def split_targets(pop_sizes: Sequence[int], n_targets: int, *, rng: np.random.Generator) -> np.ndarray:
    """Sample indices of ``n_targets`` targets drawn evenly across populations (sorted).

    Population ``p`` gives ``n // P`` targets, the first ``n % P`` populations one
    more; at least one sample per population stays in the reference.

    Raises
    ------
    InputError
        ``n_targets`` < 1 or too large to leave a reference sample in each population.
    """
    n_pop = len(pop_sizes)
    limit = sum(pop_sizes) - n_pop
    if not 1 <= n_targets <= limit:
        raise InputError(
            f"--split-targets {n_targets}: must be between 1 and {limit} (leaving one reference sample per "
            f"population with --samples-per-pop {pop_sizes[0]})"
        )
    counts = [n_targets // n_pop + (p < n_targets % n_pop) for p in range(n_pop)]
    offsets = np.cumsum([0, *pop_sizes[:-1]])
    picks = [off + np.sort(rng.choice(size, size=k, replace=False)) for off, size, k in zip(offsets, pop_sizes, counts)]
    return np.concatenate(picks).astype(np.int64)


# --- the command ---------------------------------------------------------------------------


@dataclass
class SimulationResult:
    """What :func:`simulate` wrote: output directory, files by role, sample and site counts."""

    outdir: Path
    files: dict[str, Path] = field(default_factory=dict)
    n_samples: int = 0
    n_sites: int = 0


def _chrom_names(chrom: str, k: int) -> list[str]:
    if k == 1:
        return [chrom]
    prefix = "chr" if chrom.lower().startswith("chr") else ""
    return [f"{prefix}{i}" for i in range(1, k + 1)]


def _validate(samples_per_pop, length, chrom, array_fraction, split_targets_n, pedigree, chromosomes) -> None:
    if samples_per_pop < 1 and pedigree is None:
        raise InputError(f"--samples-per-pop {samples_per_pop}: must be at least 1")
    if length < 1000:
        raise InputError(f"--length {length}: must be at least 1000 bp")
    if not chrom or any(c in chrom for c in " \t:,<>="):
        raise InputError(f"--chrom {chrom!r}: not a valid contig name; use e.g. 22 or chr22")
    if array_fraction is not None and not 0 < array_fraction <= 1:
        raise InputError(f"--array-fraction {array_fraction}: must be in (0, 1], e.g. 0.05")
    if chromosomes is not None and pedigree is not None and not 1 <= chromosomes <= 22:
        raise InputError(f"--chromosomes {chromosomes}: must be between 1 and 22 (human autosomes) with --pedigree")
    if chromosomes is not None and chromosomes < 1:
        raise InputError(f"--chromosomes {chromosomes}: must be at least 1")
    if pedigree is not None:
        if pedigree < 1:
            raise InputError(f"--pedigree {pedigree}: need at least one family")
        if split_targets_n is not None:
            raise InputError("--split-targets cannot be combined with --pedigree; simulate them separately")


def _vocab_size(haps: Haplotypes) -> int:
    """Sites a model would be trained on (MAF >= VOCAB_MIN_MAF): what an array's coverage is a fraction of."""
    af = haps.alt_frequency()
    return int((np.minimum(af, 1 - af) >= VOCAB_MIN_MAF).sum())


def _array_subsets(chroms: list[Haplotypes], fraction: float) -> list[np.ndarray]:
    return [select_array_sites(h, max(1, round(fraction * _vocab_size(h)))) for h in chroms]


def _write_array_tsv(path: Path, chroms: list[Haplotypes], picks: list[np.ndarray]) -> None:
    lines = ["chrom\tpos\tref\talt\n"]
    for h, idx in zip(chroms, picks):
        lines += [f"{h.chrom}\t{h.positions[i]}\t{h.ref[i]}\t{h.alt[i]}\n" for i in idx]
    path.write_text("".join(lines))


def _columns(samples: np.ndarray) -> np.ndarray:
    return np.stack([2 * samples, 2 * samples + 1], axis=1).reshape(-1)


def simulate(
    outdir: str | Path,
    *,
    samples_per_pop: int = 100,
    length: int = 1_000_000,
    chrom: str = "22",
    seed: int = 1,
    array_fraction: float | None = None,
    split_targets: int | None = None,
    pedigree: int | None = None,
    chromosomes: int | None = None,
    demography: str = "ooa",
    max_degree: int | None = None,
    genotype_error: float | None = None,
    recombination: str = "uniform",
    founder_map: str | None = None,
) -> SimulationResult:
    """Simulate a cohort (or families) and write VCFs plus truth tables into ``outdir``.

    Parameters
    ----------
    outdir
        New directory (an existing empty one is accepted); written under a temporary
        name and renamed when complete.
    samples_per_pop
        Diploid samples in each population (cohort mode): YRI/AFR, CEU/EUR, CHB/EAS, or
        the 12 sub-populations of ``demography="finescale"``.
    length
        Length of each simulated chromosome in bp.
    chrom
        Contig name (``22`` or ``chr22``); with several chromosomes they are named
        ``1..K`` (``chr1..chrK`` if ``chrom`` has the prefix).
    seed
        Same seed, same parameters → byte-identical VCFs.
    array_fraction
        Also write ``array_sites.tsv``: this fraction of the sites with MAF >= 1 %
        (the default model vocabulary), chosen among common sites (MAF >= 0.05) and
        spread evenly along each chromosome.
    split_targets
        Hold out this many targets (evenly across populations): writes
        ``reference.vcf.gz``, ``targets.vcf.gz`` and, with ``array_fraction``,
        ``targets_array.vcf.gz``.
    pedigree
        Instead of a cohort, simulate this many families of relatives
        (:mod:`snpbag.simulate.pedigree`): ``pedigree.vcf.gz``, ``pedigree.tsv``,
        ``pedigree_pairs.tsv``.
    chromosomes
        Number of chromosomes (default 1; 22 with ``pedigree``). In pedigree mode,
        chromosome ``k`` is a ``length``-bp stretch that carries the full genetic
        length of human autosome ``k`` (uniform map), so realised kinship varies
        as in a real genome while the VCF stays small.

    demography
        ``ooa`` (the published out-of-Africa model), ``finescale`` (three continents of
        four recently split sub-populations, snpbag.simulate.finescale) or ``admixed`` (the
        American admixture model: AFR, EUR, ASIA and the admixed ADMIX); samples.tsv gives
        each sample's population and continent.
    max_degree
        With ``pedigree``: the family template's most distant degree (default 9;
        :func:`snpbag.simulate.pedigree.family_template`, 12 reaches fifth cousins once removed).
    genotype_error
        With ``pedigree``: each written genotype call is, with this probability, replaced by
        one of the two other genotypes (uniformly; a new heterozygote gets a random phase),
        as array and sequencing errors do. The truth tables and ``array_sites.tsv`` are of the
        error-free genotypes, so a run with and without errors (same seed) differs only in
        the calls.
    founder_map
        With ``pedigree``: ``pedigree`` (default) simulates the founders' coalescent on the map the
        pedigree's crossovers use (:func:`simulate_founders`); ``physical`` at the cohort's rate per bp,
        which stretches founder LD and background sharing over each chromosome's cM (fast, unrealistic:
        unrelated founders share many runs of 10 cM and more; for tests and smoke runs).

    Returns
    -------
    SimulationResult

    Raises
    ------
    InputError
        Invalid options, an existing non-empty ``outdir``, too few common sites for
        ``array_fraction``, or too many ``split_targets``.
    """
    _validate(samples_per_pop, length, chrom, array_fraction, split_targets, pedigree, chromosomes)
    for flag, value in (("--max-degree", max_degree), ("--genotype-error", genotype_error),
                        ("--founder-map", founder_map)):
        if value is not None and pedigree is None:
            raise InputError(f"{flag} applies to pedigree simulations; add --pedigree N or drop {flag}")
    if genotype_error is not None and not 0 <= genotype_error < 1:
        raise InputError(f"--genotype-error {genotype_error}: must be in [0, 1), e.g. 0.005")
    if founder_map is not None and founder_map not in FOUNDER_MAPS:
        raise InputError(f"--founder-map {founder_map}: choose one of {', '.join(FOUNDER_MAPS)}")
    if demography not in DEMOGRAPHIES:
        raise InputError(f"--demography {demography}: choose one of {', '.join(DEMOGRAPHIES)}")
    if pedigree is not None and demography not in PEDIGREE_DEMOGRAPHIES:
        raise InputError(f"--demography {demography}: --pedigree founders come from "
                         f"{' or '.join(PEDIGREE_DEMOGRAPHIES)}; choose one of them")
    if recombination not in recmap.RECOMBINATION_MAPS:
        raise InputError(f"--recombination {recombination}: choose one of {', '.join(recmap.RECOMBINATION_MAPS)}")
    if recombination != "uniform" and pedigree is not None:
        raise InputError("--recombination applies to cohorts; --pedigree maps each chromosome's genetic length "
                         "uniformly, drop --recombination")
    outdir = Path(outdir)
    overwrite = outdir.is_dir() and not any(outdir.iterdir())
    params = dict(samples_per_pop=samples_per_pop, length=length, chrom=chrom, seed=seed,
                  array_fraction=array_fraction, split_targets=split_targets, pedigree=pedigree,
                  chromosomes=chromosomes)
    if demography != "ooa":  # only named when not the default, so default outputs keep their bytes
        params["demography"] = demography
    if recombination != "uniform":
        params["recombination"] = recombination
    for key, value in (("max_degree", max_degree), ("genotype_error", genotype_error)):
        if value is not None:
            params[key] = value
    if pedigree is not None:
        params["founder_map"] = founder_map or "pedigree"
    t0 = time.perf_counter()
    with atomic_output(outdir, overwrite=overwrite) as tmp:
        tmp.mkdir()
        if pedigree is not None:
            result = _simulate_pedigree(tmp, params)
        else:
            result = _simulate_cohort(tmp, params)
        meta = provenance("snpbag simulate", params)
        meta.update(result.pop("meta"))
        meta["outputs"] = sorted(p.name for p in result["files"].values())
        (tmp / "simulation.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    files = {k: outdir / p.name for k, p in result["files"].items()}
    files["simulation"] = outdir / "simulation.json"
    log.info("simulate: wrote %s in %.1f s", outdir, time.perf_counter() - t0)
    return SimulationResult(outdir, files, result["n_samples"], result["n_sites"])


def _model_meta(source: str, model: str = "ooa") -> dict:
    _, _, pops, name = model_of(model)
    extra = {"demography_parameters": finescale.PARAMETERS} if model == "finescale" else {}
    return {
        "demographic_model": name,
        **extra,
        "demography_source": source,
        "populations": {p: c for p, c in pops},
        "recombination_rate": RECOMBINATION_RATE,
        "mutation_rate": MUTATION_RATE,
        "mutation_model": f"HKY kappa={HKY_KAPPA} freqs(ACGT)={list(BASE_FREQUENCIES)}, discrete genome; "
                          "sites with >1 mutation dropped",
    }


def _vcf_meta(params: dict, source: str) -> list[str]:
    """Deterministic header lines (no dates) describing the simulation."""
    p = ",".join(f"{k}={v}" for k, v in params.items() if v is not None)
    name = model_of(params.get("demography") or "ooa")[3]
    return [f"snpbag_simulation=<model={name},demography={source.replace(' ', '-')},"
            f"mu={MUTATION_RATE},r={RECOMBINATION_RATE},{p}>"]


def _simulate_cohort(tmp: Path, params: dict) -> dict:
    n = params["samples_per_pop"]
    k = params["chromosomes"] or 1
    model = params.get("demography") or "ooa"
    _, source, populations, _ = model_of(model)
    ss = np.random.SeedSequence(params["seed"])
    chrom_ss, split_ss = ss.spawn(2)
    targets = None  # drawn first: a bad --split-targets fails before the simulation
    if params["split_targets"] is not None:
        targets = split_targets([n] * len(populations), params["split_targets"], rng=np.random.default_rng(split_ss))
    names = _chrom_names(params["chrom"], k)
    maps = [None] * k
    if params.get("recombination") == "hotspots":  # own stream: uniform runs keep their bytes
        map_rng = np.random.default_rng([params["seed"], 1])
        maps = [recmap.hotspot_map(params["length"], RECOMBINATION_RATE, rng=map_rng) for _ in names]
    chroms = [simulate_haplotypes([n] * len(populations), length=params["length"], chrom=c, seed=s, model=model,
                                  rate_map=m)
              for c, s, m in zip(names, chrom_ss.spawn(k), maps)]
    width = max(4, len(str(n)))
    samples = [f"{p}_{i + 1:0{width}d}" for p, _ in populations for i in range(n)]
    pops = [(p, c) for p, c in populations for _ in range(n)]
    vcf_meta = _vcf_meta(params, source)
    files: dict[str, Path] = {}

    picks = _array_subsets(chroms, params["array_fraction"]) if params["array_fraction"] is not None else None
    is_target = np.zeros(len(samples), dtype=bool)
    if targets is not None:
        is_target[targets] = True

    lines = ["sample\tpopulation\tcontinent" + ("\tsplit" if targets is not None else "") + "\n"]
    for s, (p, c), t in zip(samples, pops, is_target):
        lines.append(f"{s}\t{p}\t{c}" + (("\ttarget" if t else "\treference") if targets is not None else "") + "\n")
    (files.setdefault("samples", tmp / "samples.tsv")).write_text("".join(lines))
    if maps[0] is not None:
        files["genetic_map"] = tmp / "genetic_map.map"
        files["genetic_map"].write_text("".join(recmap.plink_map_lines(c, *m) for c, m in zip(names, maps)))

    files["cohort"] = write_vcf(tmp / "cohort.vcf.gz", chroms, samples, meta=vcf_meta)
    if picks is not None:
        files["array_sites"] = tmp / "array_sites.tsv"
        _write_array_tsv(files["array_sites"], chroms, picks)
    if targets is not None:
        ref = np.flatnonzero(~is_target)
        files["reference"] = write_vcf(tmp / "reference.vcf.gz", chroms, [samples[i] for i in ref],
                                       columns=_columns(ref), meta=vcf_meta)
        tnames = [samples[i] for i in targets]
        files["targets"] = write_vcf(tmp / "targets.vcf.gz", chroms, tnames, columns=_columns(targets), meta=vcf_meta)
        if picks is not None:
            arr = [h.subset_sites(idx) for h, idx in zip(chroms, picks)]
            files["targets_array"] = write_vcf(tmp / "targets_array.vcf.gz", arr, tnames,
                                               columns=_columns(targets), meta=vcf_meta)
    n_sites = sum(len(h.positions) for h in chroms)
    meta = _model_meta(source, model)
    meta.update(
        chromosomes={h.chrom: {"length": h.length, "sites": int(len(h.positions))} for h in chroms},
        n_samples=len(samples),
        array_sites=None if picks is None else int(sum(len(x) for x in picks)),
        targets=None if targets is None else [samples[i] for i in targets],
    )
    return {"files": files, "n_samples": len(samples), "n_sites": n_sites, "meta": meta}


def _simulate_pedigree(tmp: Path, params: dict) -> dict:

    k = params["chromosomes"] or 22
    n_fam = params["pedigree"]
    length = params["length"]
    ss = np.random.SeedSequence(params["seed"])
    chrom_ss, ped_ss = ss.spawn(2)
    names = _chrom_names(params["chrom"], k)
    model = params.get("demography") or "ooa"
    _, source, populations, _ = model_of(model)
    pop_names = [p for p, _ in populations]
    max_degree = params.get("max_degree") or ped.DEFAULT_MAX_DEGREE
    counts = ped.founders_per_population(n_fam, len(populations), max_degree=max_degree)
    lengths_cm = ped.HUMAN_AUTOSOME_CM[:k] if k > 1 else (ped.HUMAN_AUTOSOME_CM[_autosome_index(params["chrom"])],)
    if params["founder_map"] == "pedigree":
        founders = [simulate_founders(counts, length=length, length_cm=cm, chrom=c, seed=s, model=model)
                    for c, cm, s in zip(names, lengths_cm, chrom_ss.spawn(k))]
    else:
        founders = [simulate_haplotypes(counts, length=length, chrom=c, seed=s, model=model)
                    for c, s in zip(names, chrom_ss.spawn(k))]
    sim = ped.simulate_pedigree(n_fam, populations=pop_names, lengths_bp=[length] * k, lengths_cm=lengths_cm,
                                rng=np.random.default_rng(ped_ss), max_degree=max_degree)
    chroms = []
    for c in range(len(founders)):
        h, founders[c] = founders[c], None  # each founder chromosome freed once its members are copied
        g = ped.member_genotypes(sim.members, sim.genomes, h.genotypes, h.positions - 1, c)
        ac = g.sum(axis=1, dtype=np.int64)
        poly = (ac > 0) & (ac < g.shape[1])
        chroms.append(Haplotypes(h.chrom, h.length, h.positions[poly], h.ref[poly], h.alt[poly], g[poly]))
    vcf_meta = _vcf_meta(params, source)
    continent = dict(populations)
    samples = [m.id for m in sim.members]
    files: dict[str, Path] = {"samples": tmp / "samples.tsv", "pedigree": tmp / "pedigree.tsv",
                              "pairs": tmp / "pedigree_pairs.tsv"}
    files["samples"].write_text("sample\tpopulation\tcontinent\tfamily\n" + "".join(
        f"{m.id}\t{m.population}\t{continent[m.population]}\t{m.family}\n" for m in sim.members))
    ped.write_pedigree_tsv(sim.members, files["pedigree"])
    ped.write_pairs_tsv(sim.pairs, files["pairs"])
    picks = None if params["array_fraction"] is None else _array_subsets(chroms, params["array_fraction"])
    if params.get("genotype_error"):
        err_rng = np.random.default_rng(ss.spawn(1)[0])  # the third child: founders and meioses stay as without
        called = [Haplotypes(h.chrom, h.length, h.positions, h.ref, h.alt,
                             ped.genotype_errors(h.genotypes, params["genotype_error"], err_rng)) for h in chroms]
    else:
        called = chroms
    files["pedigree_vcf"] = write_vcf(tmp / "pedigree.vcf.gz", called, samples, meta=vcf_meta)
    if picks is not None:
        files["array_sites"] = tmp / "array_sites.tsv"
        _write_array_tsv(files["array_sites"], chroms, picks)
        arr = [h.subset_sites(idx) for h, idx in zip(called, picks)]
        files["pedigree_array"] = write_vcf(tmp / "pedigree_array.vcf.gz", arr, samples, meta=vcf_meta)
    meta = _model_meta(source, model)
    meta.update(
        chromosomes={h.chrom: {"length": h.length, "sites": int(len(h.positions)), "genetic_length_cm": cm}
                     for h, cm in zip(chroms, lengths_cm)},
        n_samples=len(samples),
        families=n_fam,
        meiosis="Poisson crossovers (Haldane, no interference), uniform over each chromosome, sex-averaged",
        founder_map=FOUNDER_MAPS[params["founder_map"]],
        array_sites=None if picks is None else int(sum(len(x) for x in picks)),
    )
    n_sites = sum(len(h.positions) for h in chroms)
    return {"files": files, "n_samples": len(samples), "n_sites": n_sites, "meta": meta}


def _autosome_index(chrom: str) -> int:
    """Index into the autosome table for a single named chromosome (``chr22`` → 21); 0 otherwise."""

    return int(chrom_key(chrom)) - 1 if is_autosome(chrom) else 0
