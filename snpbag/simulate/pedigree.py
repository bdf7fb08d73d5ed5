"""Pedigree simulation: families of known relationships dropped onto founder haplotypes.

Kinship estimators (KING, snpbag's learned one) are judged against relatives whose
degree and realised sharing are known exactly. This module builds multi-generation
families from a fixed template, drops founder haplotypes through them with Poisson
crossovers (Haldane map, no interference) and records, for every pair, the degree,
the relationship name, the expected kinship 2^-(d+1) and the realised kinship from
true identity by descent (which founder haplotype each segment descends from).

Haplotypes are stored as segments: ``starts`` (0-based bp where each segment begins,
``starts[0] == 0``) and ``labels`` (founder haplotype of each segment; founder ``k``
owns labels ``2k`` and ``2k + 1``, which are also its columns in the founder
genotype matrix). Pure numpy.

References
----------
Thompson EA (2013) Identity by descent: variation in meiosis, across genomes, and in
populations. Genetics 194:301-326.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snpbag.errors import InputError
from snpbag.io.genmap import GeneticMap

log = logging.getLogger(__name__)

# Sex-averaged genetic length (cM) of human autosomes 1-22: stdpopsim HomSap mean
# recombination rate (HapMap II, GRCh38) x chromosome length. 38.7 Morgans in all.
HUMAN_AUTOSOME_CM: tuple[float, ...] = (
    286.9, 267.5, 223.3, 218.4, 204.1, 192.4, 187.6, 168.4, 168.8, 178.4, 158.3,
    174.6, 149.4, 145.9, 177.3, 134.0, 129.4, 117.7, 107.8, 108.2, 80.5, 107.0,
)  # fmt: skip


#: Most distant degree of the default family template.
DEFAULT_MAX_DEGREE = 9
#: Degrees the template can be built to reach (a pair of lines at least one generation deep).
MAX_DEGREE_RANGE = (3, 20)


def line_depths(max_degree: int) -> tuple[int, int, int]:
    """Generations (a, b, h) of the full-sib lines A, B and the half-sib line H of a template whose most
    distant pairs are of degree ``max_degree``: A_a and B_b are cousins of degree a + b − 1 (two common
    ancestors), H_h and A_a half cousins of degree h + a (one), so b = ⌊(D + 1) / 2⌋, a = D + 1 − b,
    h = D − a; D = 9 gives the (5, 5, 4) of the original template."""
    lo, hi = MAX_DEGREE_RANGE
    if not lo <= max_degree <= hi:
        raise InputError(f"--max-degree {max_degree}: family templates reach degrees {lo} to {hi}")
    b = (max_degree + 1) // 2
    a = max_degree + 1 - b
    return a, b, max_degree - a


def family_template(max_degree: int = DEFAULT_MAX_DEGREE) -> tuple[tuple[str, tuple[str, str] | None], ...]:
    """One family: (label, parents or None for a founder), parents before children.

    An ancestral couple P x M has two full-sib lines A and B, continued for a and b
    generations (a continuing child plus a leaf sibling per generation, each continuing
    child married to a new founder), and P has a half-sib line H with a second partner W,
    continued for h generations (:func:`line_depths`). The default (a, b, h) = (5, 5, 4)
    yields degrees 1-9: parent-offspring, full/half siblings, (great-)grandparents,
    (grand-)avuncular, first to fourth cousins with removals, and half-cousins; spouses and
    in-laws are unrelated pairs. ``max_degree=12`` gives (7, 6, 5): degrees 1-12, up to
    fifth cousins once removed and half fifth cousins.
    """
    t: list[tuple[str, tuple[str, str] | None]] = [("P", None), ("M", None), ("W", None)]
    t += [("A1", ("P", "M")), ("B1", ("P", "M")), ("H1", ("P", "W"))]
    a, b, h = line_depths(max_degree)
    for line, depth, leaf in (("A", a, True), ("B", b, True), ("H", h, False)):
        for g in range(1, depth):
            spouse = f"{line}{g}s"
            t.append((spouse, None))
            t.append((f"{line}{g + 1}", (f"{line}{g}", spouse)))
            if leaf:
                t.append((f"{line}{g + 1}b", (f"{line}{g}", spouse)))
    return tuple(t)


def founders_per_family(max_degree: int = DEFAULT_MAX_DEGREE) -> int:
    return sum(p is None for _, p in family_template(max_degree))


FAMILY_TEMPLATE = family_template()
FOUNDERS_PER_FAMILY = founders_per_family()
MEMBERS_PER_FAMILY = len(FAMILY_TEMPLATE)


@dataclass(frozen=True)
class Member:
    """One individual. ``father``/``mother`` are ids or None; ``sex`` 1 male, 2 female."""

    id: str
    family: str
    father: str | None
    mother: str | None
    sex: int
    population: str
    founder: int | None  # index into the founder haplotype columns (labels 2k, 2k+1)


@dataclass(frozen=True)
class Haplotype:
    """One chromosome copy as founder-haplotype segments."""

    starts: np.ndarray  # int64, 0-based bp, starts[0] == 0
    labels: np.ndarray  # int64 founder haplotype label per segment

    def at(self, positions0: np.ndarray) -> np.ndarray:
        """Founder labels at 0-based positions."""
        return self.labels[np.searchsorted(self.starts, positions0, side="right") - 1]


Genome = list[tuple[Haplotype, Haplotype]]  # per chromosome: (paternal, maternal)


@dataclass(frozen=True)
class PairTruth:
    id1: str
    id2: str
    degree: int | None  # None = unrelated
    relationship: str
    expected_kinship: float
    ibd_kinship: float


@dataclass
class PedigreeSimulation:
    members: list[Member]
    genomes: dict[str, Genome]
    pairs: list[PairTruth]


def founders_per_population(n_families: int, n_populations: int, *, max_degree: int = DEFAULT_MAX_DEGREE
                            ) -> list[int]:
    """Founders each population must supply: family ``f`` draws all founders from population ``f % P``."""
    counts = [0] * n_populations
    for f in range(n_families):
        counts[f % n_populations] += founders_per_family(max_degree)
    return counts


def build_families(n_families: int, *, populations: Sequence[str], rng: np.random.Generator,
                   max_degree: int = DEFAULT_MAX_DEGREE) -> list[Member]:
    """Instantiate the family template ``n_families`` times.

    Parameters
    ----------
    n_families
        Number of families (>= 1).
    populations
        Population names; family ``f`` belongs to ``populations[f % P]`` and its
        founders are the next unused founder samples of that population, numbered
        so that founders of population ``p`` follow those of populations ``< p``
        (the layout of :func:`founders_per_population` samples).
    rng
        Draws the sex of each non-founder.
    max_degree
        The template's most distant degree (:func:`family_template`).

    Returns
    -------
    list[Member]
        Parents before children; ids ``F0001_A3`` (family, template label).

    Raises
    ------
    InputError
        ``n_families < 1``; ``max_degree`` outside :data:`MAX_DEGREE_RANGE`.
    """
    if n_families < 1:
        raise InputError(f"--pedigree {n_families}: need at least one family")
    template = family_template(max_degree)
    counts = founders_per_population(n_families, len(populations), max_degree=max_degree)
    next_founder = list(itertools.accumulate([0, *counts[:-1]]))
    width = max(4, len(str(n_families)))
    members: list[Member] = []
    for f in range(n_families):
        p = f % len(populations)
        fam = f"F{f + 1:0{width}d}"
        sex: dict[str, int] = {"P": 1, "M": 2, "W": 2}
        by_label: dict[str, Member] = {}
        for label, parents in template:
            mid = f"{fam}_{label}"
            if parents is None:
                if label not in sex:  # a spouse: the sex opposite to the partner
                    sex[label] = 3 - sex[label[:-1]]
                m = Member(mid, fam, None, None, sex[label], populations[p], next_founder[p])
                next_founder[p] += 1
            else:
                a, b = (by_label[x] for x in parents)
                father, mother = (a, b) if a.sex == 1 else (b, a)
                sex[label] = int(rng.integers(1, 3))
                m = Member(mid, fam, father.id, mother.id, sex[label], populations[p], None)
            by_label[label] = m
            members.append(m)
    return members


# --- relationships ------------------------------------------------------------------------


def _ancestors(members: Sequence[Member]) -> dict[str, dict[str, int]]:
    """For each id: {ancestor id: generations up} (including itself at 0)."""
    anc: dict[str, dict[str, int]] = {}
    for m in members:
        d = {m.id: 0}
        for p in (m.father, m.mother):
            if p is not None:
                for a, g in anc[p].items():
                    d[a] = min(d.get(a, g + 1), g + 1)
        anc[m.id] = d
    return anc


def expected_kinship_matrix(members: Sequence[Member]) -> np.ndarray:
    """Pedigree kinship coefficients by the recursive (tabular) method.

    phi(i, i) = (1 + F_i) / 2 and phi(i, j) = (phi(father_i, j) + phi(mother_i, j)) / 2
    for j not a descendant of i; founders are unrelated and not inbred. ``members``
    must list parents before children.
    """
    idx = {m.id: i for i, m in enumerate(members)}
    n = len(members)
    phi = np.zeros((n, n))
    for i, m in enumerate(members):
        if m.father is None or m.mother is None:
            phi[i, i] = 0.5
            continue
        f, mo = idx[m.father], idx[m.mother]
        row = 0.5 * (phi[f, :i] + phi[mo, :i])
        phi[i, :i] = row
        phi[:i, i] = row
        phi[i, i] = 0.5 * (1.0 + phi[f, mo])
    return phi


_ORDINAL = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", 6: "sixth"}
_TIMES = {1: "once", 2: "twice", 3: "three times", 4: "four times"}


def relationship_name(g1: int, g2: int, *, half: bool) -> str:
    """Name for relatives ``g1`` and ``g2`` generations below their closest common ancestor(s).

    ``g1 == 0`` or ``g2 == 0`` is a lineal relationship (``half`` ignored).
    """
    lo, hi = sorted((g1, g2))
    if lo == 0:
        if hi == 1:
            return "parent-offspring"
        return "great-" * (hi - 2) + "grandparent-grandchild"
    prefix = "half " if half else ""
    if lo == 1:
        if hi == 1:
            return (prefix or "full ") + "siblings"
        r = hi - 1
        return prefix + ("avuncular" if r == 1 else "great-" * (r - 2) + "grand-avuncular")
    cousin = _ORDINAL.get(lo - 1, f"{lo - 1}th")
    removed = "" if hi == lo else f" {_TIMES.get(hi - lo, f'{hi - lo} times')} removed"
    return f"{prefix}{cousin} cousins{removed}"


def classify_pair(a: str, b: str, ancestors: dict[str, dict[str, int]]) -> tuple[str, int, int, bool] | None:
    """(name, g1, g2, half) for the closest common ancestor(s) of ``a`` and ``b``; None if unrelated."""
    aa, ab = ancestors[a], ancestors[b]
    common = set(aa) & set(ab)
    if not common:
        return None
    # closest: common ancestors that are not ancestors of another common ancestor
    closest = [c for c in common if not any(c != d and c in ancestors[d] for d in common)]
    gens = {(aa[c], ab[c]) for c in closest}
    if len(gens) != 1:  # double relationships: not produced by the template
        return ("complex", -1, -1, False)
    g1, g2 = gens.pop()
    half = len(closest) == 1 and min(g1, g2) > 0
    return relationship_name(g1, g2, half=half), g1, g2, half


# --- meiosis and IBD ----------------------------------------------------------------------


def founder_genome(k: int, n_chromosomes: int) -> Genome:
    """Founder ``k``: labels 2k (paternal) and 2k+1 (maternal) along every chromosome."""
    zero = np.zeros(1, dtype=np.int64)
    return [
        (Haplotype(zero, np.array([2 * k], dtype=np.int64)), Haplotype(zero, np.array([2 * k + 1], dtype=np.int64)))
        for _ in range(n_chromosomes)
    ]


def meiosis(h0: Haplotype, h1: Haplotype, crossovers: np.ndarray, start: int) -> Haplotype:
    """The gamete from a parent with haplotypes ``h0``/``h1``.

    ``crossovers`` are sorted 0-based positions where the copied haplotype switches
    (a site at ``pos >= x`` is copied from the other haplotype); ``start`` (0 or 1)
    is the haplotype copied from position 0.
    """
    if len(crossovers) == 0:
        return h0 if start == 0 else h1
    bps = np.unique(np.concatenate([h0.starts, h1.starts, crossovers]))
    src = (start + np.searchsorted(crossovers, bps, side="right")) % 2
    lab = np.where(src == 0, h0.at(bps), h1.at(bps))
    keep = np.ones(len(bps), dtype=bool)
    keep[1:] = lab[1:] != lab[:-1]
    return Haplotype(bps[keep].astype(np.int64), lab[keep].astype(np.int64))


def _gamete(genome: Genome, lengths_bp: Sequence[int], lengths_cm: Sequence[float], rng) -> list[Haplotype]:
    out = []
    for (h0, h1), bp, cm in zip(genome, lengths_bp, lengths_cm):
        n = rng.poisson(cm / 100.0)
        xo = np.unique(rng.integers(1, bp, size=n)) if n and bp > 1 else np.zeros(0, dtype=np.int64)
        out.append(meiosis(h0, h1, xo, int(rng.integers(2))))
    return out


def drop_genomes(
    members: Sequence[Member],
    *,
    lengths_bp: Sequence[int],
    lengths_cm: Sequence[float],
    rng: np.random.Generator,
) -> dict[str, Genome]:
    """Genomes of all members: founders get their own labels, children a gamete from each parent.

    Parameters
    ----------
    members
        Parents before children (as from :func:`build_families`).
    lengths_bp
        Physical length of each chromosome (crossover positions are uniform on it).
    lengths_cm
        Sex-averaged genetic length of each chromosome; crossovers per meiosis are
        Poisson with mean ``cM / 100`` (Haldane, no interference).
    rng
        Source of crossovers and of which parental haplotype each gamete starts on.

    Returns
    -------
    dict
        id → per-chromosome (paternal, maternal) haplotypes.
    """
    if len(lengths_bp) != len(lengths_cm):
        raise InputError("pedigree: one genetic length is needed per chromosome")
    genomes: dict[str, Genome] = {}
    for m in members:
        if m.founder is not None:
            genomes[m.id] = founder_genome(m.founder, len(lengths_bp))
        else:
            pat = _gamete(genomes[m.father], lengths_bp, lengths_cm, rng)
            mat = _gamete(genomes[m.mother], lengths_bp, lengths_cm, rng)
            genomes[m.id] = list(zip(pat, mat))
    return genomes


def _shared_bp(x: Haplotype, y: Haplotype, length: int) -> int:
    bps = np.union1d(x.starts, y.starts)
    widths = np.diff(np.append(bps, length))
    return int(widths[x.at(bps) == y.at(bps)].sum())


def ibd_kinship(a: Genome, b: Genome, lengths_bp: Sequence[int]) -> float:
    """Realised kinship: the bp-weighted probability that an allele drawn from ``a`` and one from ``b`` are IBD.

    The reference implementation (pair by pair); :func:`family_ibd_kinship` is the
    vectorised one used for whole families.
    """
    labels_a = {int(x) for pair in a for h in pair for x in h.labels}
    if labels_a.isdisjoint(int(x) for pair in b for h in pair for x in h.labels):
        return 0.0  # no founder haplotype in common (e.g. different families)
    shared = sum(
        _shared_bp(x, y, bp) for (ha, hb), bp in zip(zip(a, b), lengths_bp) for x in ha for y in hb
    )
    return shared / (4.0 * float(sum(lengths_bp)))


def family_ibd_kinship(genomes: Sequence[Genome], lengths_bp: Sequence[int]) -> np.ndarray:
    """Realised kinship matrix (n, n) of ``genomes`` (diagonal: (1 + F) / 2)."""
    n = len(genomes)
    shared = np.zeros((2 * n, 2 * n))
    for c, bp in enumerate(lengths_bp):
        haps = [h for g in genomes for h in g[c]]
        bps = np.unique(np.concatenate([h.starts for h in haps]))
        widths = np.diff(np.append(bps, bp)).astype(np.float64)  # (I,)
        lab = np.stack([h.at(bps) for h in haps])  # (2n, I)
        shared += (lab[:, None, :] == lab[None, :, :]) @ widths  # (2n, 2n)
    per_ind = shared.reshape(n, 2, n, 2).sum(axis=(1, 3))
    return per_ind / (4.0 * float(sum(lengths_bp)))


# --- pair table ----------------------------------------------------------------------------


def pair_truth(members: Sequence[Member], genomes: dict[str, Genome], lengths_bp: Sequence[int]) -> list[PairTruth]:
    """Truth for every pair within a family and one founder pair per pair of families.

    Parameters
    ----------
    members
        All members (several families), parents before children.
    genomes
        From :func:`drop_genomes`.
    lengths_bp
        Chromosome lengths (weights of the realised kinship).

    Returns
    -------
    list[PairTruth]
        Within-family pairs in member order, then cross-family founder pairs
        (unrelated by construction; any other cross-family pair is unrelated too).
    """
    families: dict[str, list[Member]] = {}
    for m in members:
        families.setdefault(m.family, []).append(m)
    pairs: list[PairTruth] = []
    for fam in families.values():
        anc = _ancestors(fam)
        phi = expected_kinship_matrix(fam)
        ibd = family_ibd_kinship([genomes[m.id] for m in fam], lengths_bp)
        for i, j in itertools.combinations(range(len(fam)), 2):
            a, b = fam[i].id, fam[j].id
            cls = classify_pair(a, b, anc)
            if cls is None:
                pairs.append(PairTruth(a, b, None, "unrelated", 0.0, float(ibd[i, j])))
                continue
            degree = round(-math.log2(phi[i, j])) - 1
            assert math.isclose(phi[i, j], 2.0 ** -(degree + 1)), (a, b, phi[i, j])
            pairs.append(PairTruth(a, b, degree, cls[0], float(phi[i, j]), float(ibd[i, j])))
    fams = list(families.values())
    for (x, fx), (y, fy) in itertools.combinations(enumerate(fams), 2):
        ax = [m for m in fx if m.founder is not None]
        ay = [m for m in fy if m.founder is not None]
        a, b = ax[y % len(ax)], ay[x % len(ay)]
        ibd = ibd_kinship(genomes[a.id], genomes[b.id], lengths_bp)
        pairs.append(PairTruth(a.id, b.id, None, "unrelated", 0.0, ibd))
    return pairs


def simulate_pedigree(
    n_families: int,
    *,
    populations: Sequence[str],
    lengths_bp: Sequence[int],
    lengths_cm: Sequence[float],
    rng: np.random.Generator,
    max_degree: int = DEFAULT_MAX_DEGREE,
) -> PedigreeSimulation:
    """Families, their genomes as founder segments, and the pair truth table.

    Parameters
    ----------
    n_families
        Number of families (:func:`family_template`; the default one has
        :data:`MEMBERS_PER_FAMILY` members, :data:`FOUNDERS_PER_FAMILY` of them founders).
    populations
        Population names; see :func:`build_families`.
    lengths_bp, lengths_cm
        Physical and genetic length of each chromosome.
    rng
        Random generator (sexes, crossovers).
    max_degree
        The family template's most distant degree (:func:`family_template`).

    Returns
    -------
    PedigreeSimulation

    Raises
    ------
    InputError
        ``n_families < 1``, ``max_degree`` out of range, or mismatched chromosome lengths.
    """
    members = build_families(n_families, populations=populations, rng=rng, max_degree=max_degree)
    genomes = drop_genomes(members, lengths_bp=lengths_bp, lengths_cm=lengths_cm, rng=rng)
    pairs = pair_truth(members, genomes, lengths_bp)
    log.info("pedigree: %d families, %d members, %d truth pairs", n_families, len(members), len(pairs))
    return PedigreeSimulation(members, genomes, pairs)


def member_genotypes(
    members: Sequence[Member],
    genomes: dict[str, Genome],
    founder_genotypes: np.ndarray,
    positions0: np.ndarray,
    chromosome: int,
    *,
    chunk: int = 8192,
) -> np.ndarray:
    """Phased alleles (sites, 2 * members) of one chromosome, copied from founder haplotypes.

    ``founder_genotypes`` is (sites, 2 * founders) with founder ``k`` in columns
    ``2k, 2k+1``; ``positions0`` are the sites' 0-based positions. The founder labels are
    looked up ``chunk`` sites at a time: all at once (int64 per haplotype, then stacked: 16 bytes
    per output byte) they outgrew the machine at a few thousand genomes (docs/benchmarks.md).
    """
    haps = [h for m in members for h in genomes[m.id][chromosome]]
    out = np.empty((len(positions0), len(haps)), dtype=founder_genotypes.dtype)
    for s in range(0, len(positions0), chunk):
        e = min(s + chunk, len(positions0))
        labels = np.stack([h.at(positions0[s:e]) for h in haps], axis=1)  # (e - s, 2n)
        out[s:e] = np.take_along_axis(founder_genotypes[s:e], labels, axis=1)
    return out


def genotype_errors(genotypes: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of phased alleles (sites, 2 * samples) with each diploid call replaced, with probability
    ``rate``, by one of the two other genotypes (0/0, 0/1, 1/1), chosen uniformly; a new
    heterozygote's phase is random (array and sequencing errors, ``snpbag simulate --genotype-error``)."""
    g = genotypes.copy()
    site, sample = np.nonzero(rng.random((g.shape[0], g.shape[1] // 2)) < rate)
    dosage = g[site, 2 * sample].astype(np.int64) + g[site, 2 * sample + 1]
    new = (dosage + rng.integers(1, 3, size=dosage.size)) % 3
    first = np.where(new == 1, rng.integers(0, 2, size=new.size), new // 2)
    g[site, 2 * sample] = first
    g[site, 2 * sample + 1] = new - first
    return g


def write_pedigree_tsv(members: Sequence[Member], path: str | Path) -> None:
    """``family id father mother sex`` (plink .fam conventions: 0 = unknown parent, 1/2 sex)."""
    lines = ["family\tid\tfather\tmother\tsex\n"]
    lines += [f"{m.family}\t{m.id}\t{m.father or 0}\t{m.mother or 0}\t{m.sex}\n" for m in members]
    Path(path).write_text("".join(lines))


def write_pairs_tsv(pairs: Sequence[PairTruth], path: str | Path) -> None:
    """``id1 id2 degree relationship expected_kinship ibd_kinship``; unrelated pairs have degree NA."""
    lines = ["id1\tid2\tdegree\trelationship\texpected_kinship\tibd_kinship\n"]
    lines += [
        f"{p.id1}\t{p.id2}\t{'NA' if p.degree is None else p.degree}\t{p.relationship}\t"
        f"{p.expected_kinship:.10g}\t{p.ibd_kinship:.6f}\n"
        for p in pairs
    ]
    Path(path).write_text("".join(lines))


def recombination_rate(length_bp: int, length_cm: float) -> float:
    """Crossovers per bp per meiosis of the uniform map :func:`drop_genomes` puts on a chromosome of
    ``length_bp`` bases and ``length_cm`` cM; the founders' coalescent uses the same rate."""
    return length_cm / 100.0 / length_bp


def simulation_genetic_map(simdir: str | Path) -> GeneticMap:
    """The map a pedigree simulation dropped its crossovers on: each chromosome's genetic length spread
    uniformly over its bases (:func:`drop_genomes`), read from the directory's simulation.json.

    Raises
    ------
    InputError : not a pedigree simulation directory.
    """
    path = Path(simdir) / "simulation.json"
    try:
        chroms = json.loads(path.read_text())["chromosomes"]
        return GeneticMap({c: (np.array([0.0, float(v["length"])]), np.array([0.0, float(v["genetic_length_cm"])]))
                           for c, v in chroms.items()}, source=str(path))
    except (OSError, KeyError, ValueError) as e:
        raise InputError(f"{simdir}: no pedigree simulation.json with each chromosome's genetic length ({e}); "
                         "simulate with `snpbag simulate OUTDIR --pedigree N`") from e
