"""The degrees ``snpbag relate`` calls: KING's thresholds up to degree 3, ERSA on shared segments beyond.

Measured on held-out simulated pedigrees (docs/benchmarks.md), KING's cut points on the exact
KING-robust kinship name degrees 1–3 at least as well as anything else snpbag has (exact 0.98 /
0.84 at degrees 2 / 3 on arrays, against 0.95–0.97 / 0.83–0.86 for the trained classifier) and
cannot name a degree 4; ERSA's likelihood of a pair's shared segments (:mod:`snpbag.kinship.ersa`)
places degrees 4–8 within ±1 far more often than the classifier. The caller combines the two:

- a pair whose KING kinship falls in KING's degree-1, -2 or -3 range gets the distribution of
  the true degree of the *training* pairs in that range (so its call is KING's wherever KING is
  right most of the time, and its probability says how often that was);
- any other pair gets ERSA's posterior over degrees 3..max and unrelated: its log-likelihoods
  with the background's prior raised by the LOD cutoff (so the most probable class is ERSA's
  call at that cutoff), the degrees KING's kinship rules out (1, 2) removed.

Shared segments come from one of two detectors, each with the setting that measured best:
``hap`` (haplotype IBD, :mod:`snpbag.kinship.hapibd`; phased input) counts segments of at least
3 cM against a two-exponential background; ``ibs0`` (runs free of opposite homozygotes,
:mod:`snpbag.kinship.segments`; any input) counts segments of at least 15 cM against one
exponential. ``snpbag relate train`` fits, per detector, the background of each population
group (the pair's two populations, sorted: ``CEU``, ``CEU|YRI``) and one pooled over all
unrelated training pairs, and the LOD cutoff that keeps :data:`SPECIFICITY` of the training
unrelated pairs unrelated (never below ERSA's χ²₁ 1.92); ``snpbag relate`` uses the group
backgrounds when given each sample's population (``--populations``), else the pooled one.
The record (:func:`fit`) lives in the relate directory's ``relate.json`` under ``segments``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snpbag.errors import InputError
from snpbag.eval.relate import UNRELATED
from snpbag.inference.relateinput import PairData
from snpbag.io.genmap import GeneticMap, read_genetic_map
from snpbag.io.table import table_rows
from snpbag.kinship import degrees, ersa
from snpbag.kinship.estimators import kinship
from snpbag.kinship.hapibd import hap_ibd_segments
from snpbag.kinship.segments import Genome, Segments, ibs0_free_segments, read_genome
from snpbag.simulate.pedigree import simulation_genetic_map

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detector:
    """ERSA's detection threshold t (cM) and background length law (1 or 2 exponentials) of one detector."""

    threshold: float
    components: int


#: The settings that measured best per detector (docs/benchmarks.md, tools/bench/relate_ersa.py).
DETECTORS = {"hap": Detector(threshold=3.0, components=2), "ibs0": Detector(threshold=15.0, components=1)}
#: ``snpbag relate --detector`` choices: ``auto`` is ``hap`` on phased input, else ``ibs0``.
CHOICES = ("auto", *DETECTORS)
#: Share of the training unrelated pairs the LOD cutoff keeps unrelated.
SPECIFICITY = 0.995
#: ERSA's likelihood-ratio test (χ²₁ at α = 0.05): the lowest cutoff used.
MIN_LOD = 1.92
#: Relationship types per degree in the likelihood of a newly trained model: each degree's likelihood is
#: that of the pair's most likely relationship type of the degree — full or half collateral, or lineal
#: (:func:`snpbag.kinship.ersa.relationship_types`). ERSA's full-collateral model alone reads a lineal
#: pair's few long segments as a more distant cousin's: it called 11 of the 384 degree-4 pairs of the
#: held-out growth-founder pedigrees degree 6, 10 of them great-great-grandparent pairs (docs/benchmarks.md, which also
#: measures the equal mixture, ``all``). A model keeps the types it was fitted with (``relate.json``'s
#: ``segments.types``): its LOD cutoff is theirs.
TYPES = "best"
#: The background key of pairs whose populations are not given.
POOLED = "*"
#: KING's thresholds name degrees 1..KING_DEGREES.
KING_DEGREES = 3
#: Pseudo-count per class of the KING-range distributions (a class no training pair fell in keeps a little).
PSEUDO = 0.5


def genetic_map_of(path: str | Path | None) -> GeneticMap:
    """``--genetic-map``: a PLINK .map / HapMap file, or a ``snpbag simulate --pedigree`` directory (its map).

    Raises
    ------
    InputError : no map given, or an unreadable one.
    """
    if path is None:
        raise InputError("--genetic-map: this relate model calls degrees beyond 3 from shared segments in cM; give "
                         "--genetic-map FILE (PLINK .map or HapMap; a `snpbag simulate --pedigree` directory for "
                         "its simulation)")
    return simulation_genetic_map(path) if Path(path).is_dir() else read_genetic_map(path)


def checked_map(record: dict | None, genotypes: Path | None, genetic_map, populations, segments: str
                ) -> GeneticMap | None:
    """``snpbag relate``'s genetic map for a model with the segment ``record``, after checking what the caller
    needs (None for a model without one, which takes neither a map nor populations).

    Raises
    ------
    InputError : a map or populations for a model without segments; for one with: a bad ``segments``, no
        genotypes, a store as input, no map.
    """
    if record is None:
        if populations is not None or genetic_map is not None:
            raise InputError("--populations/--genetic-map: this relate model has no segment caller (trained with "
                             "--no-segments or by an older snpbag); drop them or retrain with `snpbag relate train`")
        return None
    if segments not in CHOICES:
        raise InputError(f"--detector {segments!r}: choose one of {', '.join(CHOICES)}")
    if genotypes is None:
        raise InputError("--input: this relate model calls distant degrees from shared segments of the genotypes; "
                         "give the VCF/BCF as --input (and the embeddings as --embeddings)")
    if genotypes.is_dir():
        raise InputError(f"--input {genotypes}: shared segments are read from a VCF/BCF, not a store; give the "
                         "VCF the store was made from")
    return genetic_map_of(genetic_map)


def read_populations(path: str | Path, ids: list[str]) -> dict[str, str]:
    """Sample → population from ``--populations`` (whitespace-separated sample and population, e.g. the
    simulator's samples.tsv; a header line naming ``sample``/``IID`` or starting with ``#`` is skipped).

    Raises
    ------
    InputError : a line with one field, or an input sample the file does not name.
    """
    pops = {f[0]: f[1] for _, f in table_rows(path, flag="--populations", headers=("sample", "IID"), fields=2,
                                              need="a sample id and its population")}
    missing = [s for s in ids if s not in pops]
    if missing:
        raise InputError(f"--populations {path}: no population for {len(missing)} input sample(s) "
                         f"({', '.join(missing[:3])}); list every sample, or drop --populations")
    return pops


def groups_of(pops: dict[str, str], ids: list[str], pairs: np.ndarray) -> np.ndarray:
    """Each pair's population group: its two populations, sorted and joined (``CEU``, ``CEU|YRI``)."""
    return np.array(["|".join(sorted({pops[ids[i]], pops[ids[j]]})) for i, j in pairs], dtype=object)


def segments_of(genome: Genome, pairs: np.ndarray, detector: str) -> Segments:
    """The pairs' shared segments of at least the detector's threshold."""
    t = DETECTORS[detector].threshold
    if detector == "hap":
        return hap_ibd_segments(genome, pairs, min_cm=t)
    return ibs0_free_segments(genome, pairs, min_cm=t)


def _concat(parts: list[Segments]) -> Segments:
    shift = np.cumsum([0] + [int(s.offsets[-1]) for s in parts[:-1]])
    offsets = np.concatenate([[0]] + [s.offsets[1:] + o for s, o in zip(parts, shift)]).astype(np.int64)
    return Segments(offsets, *(np.concatenate([getattr(s, k) for s in parts]) for k in ("chrom", "start_cm", "end_cm")))


def _model(det: Detector, genome_cm: float, chromosomes: int, background: ersa.Background, max_degree: int,
           types: str) -> ersa.Model:
    return ersa.Model(threshold=det.threshold, genome_cm=genome_cm, chromosomes=chromosomes, background=background,
                      max_degree=max_degree, types=types)


def king_threshold_degrees(kinship: np.ndarray) -> np.ndarray:
    """Degrees that KING's cut points (:func:`snpbag.kinship.degrees.degree`) give kinship values:
    1..3 or UNRELATED; duplicate/MZ calls count as degree 1 and NaN as unrelated. Applied to
    ``snpbag king``'s kinship it is KING; applied to the true realised kinship, the oracle of any
    estimator that uses those cuts."""
    d = degrees.degree(np.asarray(kinship, dtype=np.float64)).astype(np.int64)
    return np.where(d == 0, 1, np.where(d < 0, UNRELATED, d))


def king_bins(counts: np.ndarray) -> np.ndarray:
    """KING's degree (1..3, or 0 beyond) of each pair from its KING counts per patch (n, patches, 5)."""
    t = counts.sum(axis=1, dtype=np.int64)
    d = king_threshold_degrees(kinship(t[:, 0], t[:, 1], t[:, 2], t[:, 3]))
    return np.where(d == UNRELATED, 0, d)


def _classes(truth: np.ndarray, max_degree: int) -> np.ndarray:
    """Degrees (UNRELATED for unrelated) -> columns 0..max_degree (the last unrelated)."""
    return np.where(truth == UNRELATED, max_degree, truth - 1)


def fit(parts: list[tuple[Path, PairData, np.ndarray]], *, max_degree: int, specificity: float = SPECIFICITY) -> dict:
    """The ``segments`` record of a relate directory from training pedigrees.

    Parameters
    ----------
    parts : per ``snpbag simulate --pedigree`` directory, its labelled pairs (with KING counts per patch) and
        their true degrees (UNRELATED for unrelated).
    specificity : share of the training unrelated pairs the LOD cutoff keeps unrelated.

    Raises
    ------
    InputError : a bad ``specificity``, no unrelated training pairs, or an unphased training VCF.
    """
    if not 0.5 <= specificity < 1:
        raise InputError(f"--specificity {specificity}: choose a share in [0.5, 1)")
    truth = np.concatenate([t for _, _, t in parts])
    unrelated = truth == UNRELATED
    if not unrelated.any():
        raise InputError("relate train: no unrelated training pairs to fit the segment background on")
    cls = _classes(truth, max_degree)
    bins = np.concatenate([king_bins(d.counts) for _, d, _ in parts])
    table = []
    for b in range(1, KING_DEGREES + 1):
        n = np.bincount(cls[bins == b], minlength=max_degree + 1) + PSEUDO
        table.append([round(float(x), 6) for x in n / n.sum()])
    groups, segs = [], {d: [] for d in DETECTORS}
    sizes = []
    for simdir, data, _ in parts:
        pops = read_populations(simdir / "samples.tsv", data.ids)
        genome = read_genome(simdir / "pedigree.vcf.gz", simulation_genetic_map(simdir), haplotypes=True)
        if genome.ids != data.ids:
            raise InputError(f"{simdir}: pedigree.vcf.gz's samples differ from the pairs'")
        groups.append(groups_of(pops, data.ids, data.pairs))
        for d in DETECTORS:
            segs[d].append(segments_of(genome, data.pairs, d))
        sizes.append((float(genome.chromosome_cm.sum()), len(genome.chromosomes)))
    group = np.concatenate(groups)
    genome_cm = float(np.mean([s[0] for s in sizes]))
    chromosomes = int(round(np.mean([s[1] for s in sizes])))
    record = {"types": TYPES, "specificity": specificity, "king_degrees": KING_DEGREES, "king_table": table,
              "unrelated_pairs": {str(g): int((unrelated & (group == g)).sum()) for g in np.unique(group)},
              "detectors": {}}
    for d, det in DETECTORS.items():
        s = _concat(segs[d])
        bgs = {str(g): ersa.fit_background(s.subset(unrelated & (group == g)), threshold=det.threshold,
                                           components=det.components) for g in np.unique(group[unrelated])}
        bgs[POOLED] = ersa.fit_background(s.subset(unrelated), threshold=det.threshold, components=det.components)
        cut = {}
        for mode, per in (("groups", ersa.per_pair(bgs, group)), ("pooled", bgs[POOLED])):
            ll = ersa.log_likelihoods(s, _model(det, genome_cm, chromosomes, per, max_degree, TYPES))
            lod = ll[:, :-1].max(1) - ll[:, -1]
            cut[mode] = max(MIN_LOD, float(np.quantile(lod[unrelated], specificity)))
        record["detectors"][d] = {"threshold_cm": det.threshold, "components": det.components,
                                  "min_lod": cut, "backgrounds": {g: b.to_dict() for g, b in bgs.items()}}
    return record


def read_genome_for(path: str | Path, genetic_map: GeneticMap, detector: str) -> tuple[Genome, str]:
    """(genome, detector used): ``auto`` reads haplotypes and uses ``hap`` when every call is phased, else ``ibs0``.

    Raises
    ------
    InputError : ``hap`` on unphased input, a map without the input's chromosomes, no autosomal SNPs.
    """
    if detector not in CHOICES:
        raise InputError(f"--detector {detector!r}: choose one of {', '.join(CHOICES)}")
    if detector == "ibs0":
        return read_genome(path, genetic_map), "ibs0"
    try:
        return read_genome(path, genetic_map, haplotypes=True), "hap"
    except InputError:
        if detector == "hap":
            raise
    log.info("%s: not phased throughout; shared segments from runs free of opposite homozygotes", path)
    return read_genome(path, genetic_map), "ibs0"


@dataclass
class Calls:
    """Per pair: probabilities (n, max_degree + 1; the last unrelated), segments >= t and their total cM."""

    probabilities: np.ndarray
    segments: np.ndarray
    shared_cm: np.ndarray
    detector: str
    background: str  # "groups" or "pooled"


def call(record: dict, genome: Genome, pairs: np.ndarray, counts: np.ndarray, *, detector: str, max_degree: int,
         groups: np.ndarray | None = None) -> Calls:
    """The combined caller's probabilities (module text) for ``pairs`` of ``genome``.

    Parameters
    ----------
    record : a relate directory's ``segments`` record (:func:`fit`).
    counts : the pairs' KING counts per patch (n, patches, 5).
    detector : ``hap`` or ``ibs0`` (as :func:`read_genome_for` chose).
    groups : each pair's population group (:func:`groups_of`); None: the pooled background.

    Raises
    ------
    InputError : a population group the model has no background for.
    """
    det_rec = record["detectors"][detector]
    det = Detector(float(det_rec["threshold_cm"]), int(det_rec["components"]))
    bgs = {g: ersa.Background(**v) for g, v in det_rec["backgrounds"].items()}
    mode = "pooled" if groups is None else "groups"
    if groups is None:
        background = bgs[POOLED]
    else:
        unknown = sorted(set(groups.tolist()) - set(bgs) - {POOLED})
        if unknown:
            known = ", ".join(g for g in bgs if g != POOLED)
            raise InputError(f"--populations: population group(s) {', '.join(unknown[:3])} have no background in "
                             f"this model (trained on {known}); train on pedigrees of those populations, or drop "
                             "--populations for the pooled background")
        background = ersa.per_pair(bgs, groups)
    segs = segments_of(genome, pairs, detector)
    model = _model(det, float(genome.chromosome_cm.sum()), len(genome.chromosomes), background, max_degree,
                   str(record["types"]))
    ll = ersa.log_likelihoods(segs, model)
    ll[:, -1] += float(det_rec["min_lod"][mode])  # the background's prior: ERSA's call at the cutoff wins
    from scipy.special import logsumexp  # lazy: scipy.special costs every snpbag command ~0.15 s to import

    post = np.exp(ll - logsumexp(ll, axis=1, keepdims=True))
    post[:, :KING_DEGREES - 1] = 0.0  # beyond KING's degree-3 range: not degree 1 or 2
    post /= np.maximum(post.sum(axis=1, keepdims=True), 1e-300)
    bins = king_bins(counts)
    table = np.asarray(record["king_table"], dtype=np.float64)
    p = np.where((bins > 0)[:, None], table[np.maximum(bins, 1) - 1], post)
    return Calls(p, segs.count(), segs.total_cm(), detector, mode)
