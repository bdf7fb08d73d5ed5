"""The coalescent behind every simulated cohort: msprime under a published demography, one
chromosome's phased biallelic SNPs at a time, and their VCF text.

Model: the three-population out-of-Africa model of Gutenkunst et al. (2009),
``HomSap/OutOfAfrica_3G09`` in the stdpopsim catalogue (YRI, CEU, CHB standing for
the AFR, EUR and EAS continental groups), a uniform recombination rate of 1.2e-8
per bp per generation and mutation rate 1.29e-8 (stdpopsim's HomSap default; the
model's own 2.35e-8 was fitted to a different data set). Mutations follow HKY
(kappa 4, human base composition, so Ts/Tv is about 2) on a discrete genome; sites
hit by more than one mutation are dropped, so every site is a biallelic SNP with
REF = ancestral and ALT = derived base. Pedigree founders (:func:`simulate_founders`)
coalesce on the pedigree's own map instead.

:mod:`snpbag.simulate.cohort` turns these into a cohort directory (targets, arrays,
pedigrees, stores).

References
----------
Gutenkunst RN et al. (2009) PLoS Genet 5:e1000695.
Browning SR et al. (2018) PLoS Genet 14:e1007385 (``--demography admixed``; AFAM of ``growth``).
Tennessen JA et al. (2012) Science 337:64-69; Fu W et al. (2013) Nature 493:216-220 (``growth``).
Mooney JA et al. (2023) Genetics, PMC10324943 (African-American ancestry proportions, ``growth``).
Adrion JR et al. (2020) eLife 9:e54967 (stdpopsim).
Baumdicker F et al. (2022) Genetics 220:iyab229 (msprime 1.0).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from snpbag.errors import InputError
from snpbag.io import vcfwrite
from snpbag.simulate import finescale
from snpbag.simulate import pedigree as ped

if TYPE_CHECKING:
    import msprime

log = logging.getLogger(__name__)

DEMOGRAPHIC_MODEL = "HomSap/OutOfAfrica_3G09"
POPULATIONS: tuple[tuple[str, str], ...] = (("YRI", "AFR"), ("CEU", "EUR"), ("CHB", "EAS"))
#: ``--demography`` choices: the published out-of-Africa model, or the fine-scale model of
#: snpbag.simulate.finescale (sub-populations for classification benchmarks), or the American
#: admixture model (an admixed population beside its three sources, for phasing benchmarks), or
#: the out-of-Africa model with explosive recent growth plus an African-American-like admixed
#: population (:func:`_growth`; realistic background IBD for pedigree founders)
DEMOGRAPHIES = ("ooa", "finescale", "admixed", "growth")
ADMIXED_MODEL = "HomSap/AmericanAdmixture_4B18"
ADMIXED_POPULATIONS: tuple[tuple[str, str], ...] = (("AFR", "AFR"), ("EUR", "EUR"), ("ASIA", "EAS"), ("ADMIX", "AMR"))
GROWTH_MODEL = "HomSap/OutOfAfrica_2T12+AFAM"
#: AFAM is admixed from AFR and EUR; its continent follows 1000 Genomes, which puts ASW and ACB in AFR.
GROWTH_POPULATIONS: tuple[tuple[str, str], ...] = (("AFR", "AFR"), ("EUR", "EUR"), ("AFAM", "AFR"))
#: The admixed population of ``growth``: formed ``time`` generations ago from AFR and EUR in these
#: proportions, ``initial_size`` diploids then, growing ``growth_rate`` per generation since.
GROWTH_ADMIXTURE = {"time": 12, "proportions": {"AFR": 0.8, "EUR": 0.2}, "initial_size": 200_000,
                    "growth_rate": 0.05}
RECOMBINATION_RATE = 1.2e-8
MUTATION_RATE = 1.29e-8
# HKY with kappa 4 and human base composition gives Ts/Tv ~2 (JC69 would give 0.5).
HKY_KAPPA = 4.0
BASE_FREQUENCIES = (0.295, 0.205, 0.205, 0.295)  # A, C, G, T
_GT_HEADER = '##FORMAT=<ID=GT,Number=1,Type=String,Description="Phased genotype">'


# --- demography and coalescent simulation ------------------------------------------------


def _ooa_3g09() -> msprime.Demography:
    """Gutenkunst et al. (2009) Table 1 ML values, as in the stdpopsim catalogue."""
    import msprime

    gen = 25
    t_af, t_b, t_eu_as = 220e3 / gen, 140e3 / gen, 21.2e3 / gen
    r_eu, r_as = 0.004, 0.0055
    d = msprime.Demography()
    d.add_population(name="YRI", initial_size=12300)
    d.add_population(name="CEU", initial_size=1000 / math.exp(-r_eu * t_eu_as), growth_rate=r_eu)
    d.add_population(name="CHB", initial_size=510 / math.exp(-r_as * t_eu_as), growth_rate=r_as)
    d.set_symmetric_migration_rate(["YRI", "CEU"], 3e-5)
    d.set_symmetric_migration_rate(["YRI", "CHB"], 1.9e-5)
    d.set_symmetric_migration_rate(["CEU", "CHB"], 9.6e-5)
    d.add_mass_migration(time=t_eu_as, source="CHB", dest="CEU", proportion=1.0)
    d.add_migration_rate_change(time=t_eu_as, rate=0)
    d.add_migration_rate_change(time=t_eu_as, rate=25e-5, source="YRI", dest="CEU")
    d.add_migration_rate_change(time=t_eu_as, rate=25e-5, source="CEU", dest="YRI")
    d.add_population_parameters_change(time=t_eu_as, initial_size=2100, growth_rate=0, population="CEU")
    d.add_mass_migration(time=t_b, source="CEU", dest="YRI", proportion=1.0)
    d.add_migration_rate_change(time=t_b, rate=0)
    d.add_population_parameters_change(time=t_af, initial_size=7300, population="YRI")
    return d


def demography() -> tuple[msprime.Demography, str]:
    """The out-of-Africa demography and where it came from ("stdpopsim x.y" or "builtin").

    stdpopsim's catalogue is preferred; the built-in copy of the same model is used
    when stdpopsim cannot be imported (tests check the two agree).
    """
    try:
        import stdpopsim

        model = stdpopsim.get_species("HomSap").get_demographic_model("OutOfAfrica_3G09")
        return model.model, f"stdpopsim {stdpopsim.__version__}"
    except Exception as e:  # noqa: BLE001 - any failure falls back to the same model
        log.warning("stdpopsim unavailable (%s); using the built-in OutOfAfrica_3G09", e)
        return _ooa_3g09(), "builtin"


def _catalogue(choice: str, model_id: str) -> tuple[msprime.Demography, str]:
    """(demography, source) of stdpopsim's HomSap/``model_id`` for ``--demography choice``: no built-in
    copy, so stdpopsim is required."""
    try:
        import stdpopsim

        model = stdpopsim.get_species("HomSap").get_demographic_model(model_id)
    except Exception as e:  # noqa: BLE001 - any failure means the catalogue model is unavailable
        raise InputError(f"--demography {choice}: needs stdpopsim's HomSap/{model_id} ({e}); "
                         "pip install stdpopsim or choose --demography ooa") from e
    return model.model, f"stdpopsim {stdpopsim.__version__}"


def _admixed() -> tuple[msprime.Demography, str]:
    """Browning et al. (2018) American admixture (African, European, Asian sources mixed 12
    generations ago), from the stdpopsim catalogue."""
    return _catalogue("admixed", ADMIXED_MODEL.split("/")[1])


def _growth() -> tuple[msprime.Demography, str]:
    """Tennessen et al. (2012) out-of-Africa model with explosive growth over the last 204 generations
    (AFR to 432k, EUR to 501k diploids; stdpopsim's ``OutOfAfrica_2T12``, parameters from Fu et al. 2013)
    plus AFAM, an African-American-like population: formed 12 generations ago (the admixture time of
    Browning et al. 2018's American model) with 80 % AFR and 20 % EUR ancestry (African Americans carry
    75-85 % African ancestry on average, Mooney et al. 2023), 200,000 diploids then (the post-admixture minimum of the
    recent effective size Browning et al. 2018 estimated for Pittsburgh's African Americans) growing 5 % per generation (the growth of
    their American model) to about 364,000. The 3G09 model's recent sizes (12,300 to 54,000) make
    unrelated founders of one population share long IBD segments several times more often than real
    people of large, growing populations do; this model does not. stdpopsim is required."""
    import copy

    catalogued, source = _catalogue("growth", "OutOfAfrica_2T12")
    dem = copy.deepcopy(catalogued)
    a = GROWTH_ADMIXTURE
    dem.add_population(name="AFAM", description="African-American-like, admixed from AFR and EUR",
                       initial_size=a["initial_size"] * math.exp(a["growth_rate"] * a["time"]),
                       growth_rate=a["growth_rate"])
    dem.add_admixture(time=a["time"], derived="AFAM", ancestral=list(a["proportions"]),
                      proportions=list(a["proportions"].values()))
    dem.sort_events()
    return dem, source


def model_of(name: str = "ooa") -> tuple[msprime.Demography, str, tuple[tuple[str, str], ...], str]:
    """(demography, its source, (population, continent) in sample order, model name) of a
    ``--demography`` choice."""
    if name == "finescale":
        return finescale.demography(), "builtin", finescale.POPULATIONS, finescale.NAME
    if name == "admixed":
        return (*_admixed(), ADMIXED_POPULATIONS, ADMIXED_MODEL)
    if name == "growth":
        return (*_growth(), GROWTH_POPULATIONS, GROWTH_MODEL)
    if name != "ooa":
        raise InputError(f"--demography {name}: choose one of {', '.join(DEMOGRAPHIES)}")
    dem, source = demography()
    return dem, source, POPULATIONS, DEMOGRAPHIC_MODEL


@dataclass
class Haplotypes:
    """Phased biallelic SNPs of one chromosome: sites x haplotypes (sample i = columns 2i, 2i+1)."""

    chrom: str
    length: int
    positions: np.ndarray  # (S,) int64, 1-based
    ref: np.ndarray  # (S,) str
    alt: np.ndarray  # (S,) str
    genotypes: np.ndarray  # (S, 2N) uint8 allele indices

    def subset_sites(self, keep: np.ndarray) -> Haplotypes:
        return Haplotypes(self.chrom, self.length, self.positions[keep], self.ref[keep], self.alt[keep],
                          self.genotypes[keep])

    def alt_frequency(self, columns: np.ndarray | None = None) -> np.ndarray:
        g = self.genotypes if columns is None else self.genotypes[:, columns]
        return g.mean(axis=1, dtype=np.float64) if g.shape[1] else np.zeros(len(self.positions))


#: Longest stretch (cM) one coalescent run simulates of a pedigree chromosome. msprime's time grows about
#: with the square of a run's genetic length (one 2-pop-founder run: 1.2 / 3.2 / 12 CPU s at 12 / 25 / 50 cM;
#: a whole 287 cM chromosome 1 > 9 min), so each chromosome is simulated as independent blocks of at most
#: this length: founder LD and background sharing are realistic up to it and cut at block ends.
FOUNDER_BLOCK_CM = 25.0
#: How pedigree founders are simulated (``founder_map``), as simulation.json records it.
FOUNDER_MAPS = {
    "pedigree": f"coalescent on the pedigree's map (each chromosome's genetic length over its bp), "
                f"independent blocks of <= {FOUNDER_BLOCK_CM:g} cM",
    "physical": f"coalescent at the cohort rate {RECOMBINATION_RATE} per bp: founder LD and background sharing "
                "stretched over the pedigree map (fast; for tests and smoke runs)",
}


def simulate_founders(samples_per_pop: Sequence[int], *, length: int, length_cm: float, chrom: str,
                      seed: np.random.SeedSequence, model: str = "ooa") -> Haplotypes:
    """One pedigree chromosome of founders whose coalescent ran on the map the pedigree's crossovers use
    (``length_cm`` spread uniformly over ``length`` bp, :func:`snpbag.simulate.pedigree.recombination_rate`),
    so unrelated founders share haplotypes over as many cM as real unrelated people do, not the 10-25x
    longer stretches a 1.2e-8 per bp coalescent gives once its bp carry a whole chromosome's cM.
    Simulated as :data:`FOUNDER_BLOCK_CM` blocks of equal bp, each its own run, concatenated."""
    rate = ped.recombination_rate(length, length_cm)
    ends = np.linspace(0, length, max(1, math.ceil(length_cm / FOUNDER_BLOCK_CM)) + 1).round().astype(np.int64)
    blocks = []
    for lo, hi, s in zip(ends[:-1], ends[1:], seed.spawn(len(ends) - 1)):
        h = simulate_haplotypes(samples_per_pop, length=int(hi - lo), chrom=chrom, seed=s, model=model,
                                rate_map=(np.array([0.0, hi - lo]), np.array([rate])))
        blocks.append(h)
        h.positions += lo
    cat = [np.concatenate([getattr(h, f) for h in blocks]) for f in ("positions", "ref", "alt", "genotypes")]
    return Haplotypes(chrom, int(length), *cat)


def _msprime_seed(ss: np.random.SeedSequence) -> int:
    return int(ss.generate_state(1, dtype=np.uint32)[0]) % (2**32 - 2) + 1


def simulate_haplotypes(
    samples_per_pop: Sequence[int],
    *,
    length: int,
    chrom: str,
    seed: np.random.SeedSequence,
    model: str = "ooa",
    rate_map: tuple[np.ndarray, np.ndarray] | None = None,
) -> Haplotypes:
    """One chromosome of diploid samples, populations in the order of the model's
    populations (:data:`POPULATIONS` for ``ooa``).

    Parameters
    ----------
    samples_per_pop
        Diploid samples from YRI, CEU, CHB (zeros allowed).
    length
        Sequence length in bp.
    chrom
        Contig name written to the VCF.
    seed
        Seeds the ancestry and the mutation simulations.
    rate_map
        (breakpoints, rates) of a non-uniform recombination map (:mod:`snpbag.simulate.recmap`);
        default the uniform :data:`RECOMBINATION_RATE`.

    Returns
    -------
    Haplotypes
        Sites hit by exactly one mutation (biallelic SNPs), REF ancestral.
    """
    import msprime
    import tskit

    dem, _, pops, _ = model_of(model)
    sets = [msprime.SampleSet(n, population=p, ploidy=2) for (p, _), n in zip(pops, samples_per_pop) if n]
    s_anc, s_mut = seed.spawn(2)
    rate = RECOMBINATION_RATE if rate_map is None else msprime.RateMap(position=rate_map[0], rate=rate_map[1])
    ts = msprime.sim_ancestry(samples=sets, demography=dem, sequence_length=length,
                              recombination_rate=rate, random_seed=_msprime_seed(s_anc))
    hky = msprime.HKY(kappa=HKY_KAPPA, equilibrium_frequencies=BASE_FREQUENCIES)
    ts = msprime.sim_mutations(ts, rate=MUTATION_RATE, model=hky, random_seed=_msprime_seed(s_mut))
    # keep sites with exactly one mutation that changes the base (HKY allows silent ones)
    tables = ts.tables
    n_mut = np.bincount(tables.mutations.site, minlength=ts.num_sites)
    derived = np.array(tskit.unpack_strings(tables.mutations.derived_state, tables.mutations.derived_state_offset))
    ancestral = np.array(tskit.unpack_strings(tables.sites.ancestral_state, tables.sites.ancestral_state_offset))
    silent = np.zeros(ts.num_sites, dtype=bool)
    silent[tables.mutations.site[derived == ancestral[tables.mutations.site]]] = True
    ts = ts.delete_sites(np.flatnonzero((n_mut != 1) | silent))
    tables = ts.tables  # one mutation per site now, sorted by site
    ref = np.array(tskit.unpack_strings(tables.sites.ancestral_state, tables.sites.ancestral_state_offset), dtype="<U1")
    alt = np.array(tskit.unpack_strings(tables.mutations.derived_state, tables.mutations.derived_state_offset),
                   dtype="<U1")
    assert len(alt) == len(ref) and (tables.mutations.site == np.arange(len(ref))).all()
    geno = np.empty((ts.num_sites, ts.num_samples), dtype=np.uint8)
    for i, v in enumerate(ts.variants(copy=False)):
        geno[i] = v.genotypes  # allele 0 = ancestral (REF), 1 = derived (ALT)
    pos = tables.sites.position.astype(np.int64) + 1
    log.info("%s: %d biallelic SNPs, %d haplotypes, %d trees", chrom, len(pos), ts.num_samples, ts.num_trees)
    return Haplotypes(chrom, int(length), pos, ref, alt, geno)


# --- VCF text ------------------------------------------------------------------------------


def vcf_header(samples: Sequence[str], contigs: Sequence[tuple[str, int]], *, meta: Sequence[str] = ()) -> str:
    """VCFv4.2 header: fileformat, source, contigs (with lengths), GT, extra ``meta`` lines."""
    from importlib.metadata import version

    return vcfwrite.header_text(samples, contigs=contigs, head=[f"##source=snpbag-{version('snpbag')}"],
                                tail=[_GT_HEADER, *(f"##{m}" for m in meta)])


def vcf_records(haps: Haplotypes, columns: np.ndarray | None = None) -> Iterator[bytes]:
    """VCF records of ``haps`` (phased ``a|b``) for the samples whose haplotype columns are ``columns``."""
    return vcfwrite.phased_records(haps.chrom, haps.positions, haps.ref, haps.alt, haps.genotypes, columns)


def write_vcf(path: Path, chroms: Sequence[Haplotypes], samples: Sequence[str], *,
              columns: np.ndarray | None = None, meta: Sequence[str] = ()) -> Path:
    """Write ``chroms`` (in order) for ``samples`` as a bgzipped, indexed VCF."""
    header = vcf_header(samples, [(h.chrom, h.length) for h in chroms], meta=meta)
    return vcfwrite.write_vcf(path, header, (r for h in chroms for r in vcf_records(h, columns)))
