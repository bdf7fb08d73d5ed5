"""Phasing diploid genotypes with the haplotype-copying model, against a panel or the cohort.

The copying model is the one :mod:`snpbag.retrieval.haplotypes` runs for genotype
probabilities (Li & Stephens 2003): the hidden state is an ordered pair of panel haplotypes,
one per copy, chosen among K candidates per block of sites (fewest opposite-homozygote
conflicts), each copy switching with ρ = 1 − exp(−0.04·Ne·Δcm / H) between sites, a
genotype emitted as the pair's allele sum with error ``eps``. Its forward, backward and
state selection are shared from there; what phasing adds is how the pair posterior is read.

**What is decided, and its confidence.** The two copies of the model are exchangeable, so
the marginal posterior at one site is symmetric and says nothing about phase. Phase is
relative: for each heterozygous site s the quantity is
``P(same) = P(ALT at s is on the copy that carries the ALT of the anchor r | all genotypes)``,
r being the last heterozygous site before s that the model explains as a heterozygous pair
(usually the previous heterozygote). It is computed exactly within the block's window by a
*conditioned forward*: the forward probabilities at r restricted to the pairs whose first
copy carries r's ALT and second copy its REF, carried forward through the sites between r
and s with the same transitions, times the backward probabilities at s. The mass on pairs
(ALT, REF) over the mass on (ALT, REF) + (REF, ALT) at s is P(same). The conditioned
forward is not symmetric in the two copies, so its step
(:func:`~snpbag.retrieval.copying.advance_conditioned`) sums columns for copy 1's switches
and rows for copy 2's; the symmetric forward's step reads row sums for both, which on the
conditioned forward moves the anchor's ALT to the other copy with probability ρ per site
rather than ρ² (tests/test_phase.py checks P(same) against a dense reference). This is the
parameterisation a switch error counts (one decision per consecutive pair of
heterozygous sites), and the one Beagle and SHAPEIT report as a phase confidence. A
heterozygote whose posterior mass lies mostly on homozygous pairs (the copied haplotypes
do not carry one of its alleles: a genotype error or a mutation under the model) carries
no phase information for the next ones, so it is not made an anchor: where its own guess
is wrong, the error is a flip (one site) rather than a switch.

**Decoding** chains these decisions: s goes on the same haplotype as r when
P(same) ≥ 0.5. The alternative, a Viterbi path over the pair states, maximises the joint
probability of the whole path rather than each consecutive relative phase, which is not
what switch error scores; the chained posterior is also what gives PP for free (a Viterbi
decoding was not implemented to compare). PP is the probability that the printed phase
relative to the previous heterozygous site is right: max(P(same), 1 − P(same)) when the
previous one is the anchor, else a·b + (1 − a)(1 − b) for the two sites' confidences a, b
relative to the anchor (treated as independent); NaN at the first heterozygous site of a
sequence and where nothing orients a site (its input order is kept, PP 0.5).

**Missing calls** are filled from the same conditioned posterior: the genotype is the most
probable allele sum, and a filled heterozygote is oriented relative to the previous typed
heterozygote like a typed one. Typed genotypes are never changed, only ordered.

**Cohort only** (:func:`phase_cohort`): the cohort is its own panel. The panel starts as the
unphased genotypes — homozygous alleles as they are, heterozygous and missing ones as
"either allele" (emission averaged over both, :func:`~snpbag.retrieval.haplotypes.emission_rows`),
which is better than a random phase to copy from — then every sample is phased against the
other samples' current haplotypes (its own two left out), in batches of a fixed size, each
batch copying the latest haplotypes of the others, for a few iterations (the scheme of
Beagle's and SHAPEIT's burn-in). The seed sets the order samples are visited in; the batch
size is fixed, so the thread count does not change the result.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numba import njit

from snpbag.errors import InputError
from snpbag.retrieval import happhase
from snpbag.retrieval.copying import (advance_conditioned, alleles_at, normalise, backward, forward, switch_rho,
                                     emission_rows)
from snpbag.retrieval.states import check_selection, composite_panel, count_allowed, rank_states, tie_hash


#: The phasing models (:class:`PhaseOptions`).
MODELS = ("pair", "haploid")


@dataclass(frozen=True)
class PhaseOptions:
    """Copying-model settings for phasing (see the module doc).

    states : K candidate haplotypes per block (K² pair states).
    block, margin : sites per block and sites of context either side.
    ne : effective population size in the switch probability.
    eps : genotype error probability.
    iterations : cohort-only rounds (each re-phases every sample once).
    rounds : with a panel, passes per sample (the states of a pass chosen by similarity to
        the last pass's haplotypes; the first by conflicts).
    selection : ``conflicts`` (K haplotypes per block) or ``composite`` (K composite
        haplotypes per target that persist across blocks), :mod:`snpbag.retrieval.states`;
    step, width, matches : the composite rule's informative sites per step, steps either
        side in a match's window, and haplotypes matched per query haplotype per step.
    model : ``pair`` (this module's pair HMM over ``states``² pair states) or ``haploid``
        (:mod:`snpbag.retrieval.happhase`: a haploid HMM per haplotype over
        ``haploid_states`` composite haplotypes, ``burnin`` + ``fixing`` updates, the states
        matched again for the first ``restate``; sites whose panel minor allele frequency is
        below ``rare`` phased in a second stage; ``states``,
        ``block``, ``margin``, ``rounds`` and ``selection`` are the pair model's).
    rescore : the haploid model: after the last update, every het's PP is that of its phase
        relative to all the sites before it, both haplotypes read whole
        (:func:`~snpbag.retrieval.happhase.whole_confidence`), instead of the confidence of
        the decision that fixed it, which read only the segments between its unphased
        neighbours at the time (lower: PP is then underconfident).
    """

    states: int = 40
    block: int = 128
    margin: int = 64
    ne: float = 1e5
    eps: float = 1e-3
    iterations: int = 6
    rounds: int = 3
    selection: str = "composite"
    step: int = 8
    width: int = 2
    matches: int = 2
    model: str = "haploid"
    haploid_states: int = 600
    burnin: int = 2
    fixing: int = 6
    restate: int = 3
    rare: float = 0.005
    rescore: bool = False

    def __post_init__(self):
        check_selection(self.selection, "phasing options: selection")
        check_selection(self.model, "phasing options: model", MODELS)
        if self.haploid_states < 2 or self.burnin < 0 or self.fixing < 1 or self.restate < 1 \
                or not 0 <= self.rare < 0.5:
            raise InputError(f"phasing options {self}: need haploid_states >= 2, burnin >= 0, fixing >= 1, "
                             "restate >= 1 and 0 <= rare < 0.5")
        if self.step < 1 or self.width < 0 or self.matches < 1:
            raise InputError(f"phasing options {self}: need step >= 1, width >= 0, matches >= 1")
        if self.states < 2 or self.block < 1 or self.margin < 1 or self.ne <= 0 or not 0 < self.eps < 0.5 \
                or self.iterations < 1 or self.rounds < 1:
            raise InputError(f"phasing options {self}: need states >= 2, block, margin, iterations, rounds >= 1, "
                             "ne > 0 and 0 < eps < 0.5")


#: The phaser's default for :func:`phased_composite` (the pair HMM's ``composite`` states)
#: and :func:`phase_visible`: the pair model, whose imputed r² docs/benchmarks.md reports
#: for ``composite``; the ``phased`` selection phases with its own options
#: (:data:`snpbag.retrieval.draws.PHASE_OPTIONS`).
IMPUTE_OPTIONS = PhaseOptions(model="pair")


@dataclass
class Phased:
    """Phased calls of a set of samples over the same sites.

    haplotypes : (n, L, 2) int8 alleles (filled where the input was missing).
    pp : (n, L) float32 probability that the phase relative to the previous heterozygous
        site is right; NaN where it does not apply (homozygous, the first heterozygote).
    filled : (n, L) bool, the calls that were missing in the input.
    """

    haplotypes: np.ndarray
    pp: np.ndarray
    filled: np.ndarray


def _threads(threads: int | None, n: int) -> int:
    return max(1, min(n, threads or len(os.sched_getaffinity(0))))


def _pool_map(fn, n: int, threads: int | None) -> list:
    k = _threads(threads, n)
    if k <= 1:
        return [fn(i) for i in range(n)]
    with ThreadPoolExecutor(k) as pool:  # the kernel releases the GIL
        return list(pool.map(fn, range(n)))


def dosages(genotypes: np.ndarray) -> np.ndarray:
    """ALT dosage 0/1/2 of (..., 2) calls, −1 where either allele is missing."""
    g = np.asarray(genotypes)
    return np.where((g >= 0).all(-1), g.sum(-1), -1).astype(np.int8)


def phase_sample(panel: np.ndarray, cm: np.ndarray, genotypes: np.ndarray, *, bounds, allowed: np.ndarray,
                 options: PhaseOptions, estimate: np.ndarray | None = None,
                 stages: happhase.Stages | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phase one sample: (haplotypes (L, 2) int8, pp (L,) float32, filled (L,) bool).

    panel : (L, H) int8 site-major panel alleles; cm : (L,) genetic positions;
    genotypes : (L, 2) int8 calls (−1 missing; the order of a heterozygote is kept when
    nothing orients it); bounds : (start, stop) site ranges phased separately (chromosomes);
    allowed : (H,) bool, the haplotypes that may be copied; estimate : (L, 2) current
    haplotypes of the sample, to choose the states by (None: by conflicts with the genotypes);
    stages : the haploid model's two stages of ``panel`` (:func:`happhase.split_stages`,
    taken once by a caller that phases many samples against it; None: taken here, per call).
    """
    g = np.asarray(genotypes)
    L = g.shape[0]
    d = dosages(g)
    first_alt = (g[:, 0] == 1).astype(np.int8)
    hap = np.empty((L, 2), dtype=np.int8)
    pp = np.full(L, np.nan, dtype=np.float32)
    est = np.zeros((L, 2), dtype=np.int8) if estimate is None else np.ascontiguousarray(estimate, dtype=np.int8)
    o = options
    for a, b in bounds:
        if b <= a:
            continue
        if o.model == "haploid":
            hap[a:b], pp[a:b] = happhase.phase_sequence(
                panel[a:b], cm[a:b], d[a:b], first_alt[a:b], allowed=allowed, n_ref=int(np.count_nonzero(allowed)),
                states=o.haploid_states, burnin=o.burnin, fixing=o.fixing, restate=o.restate, ne=o.ne, eps=o.eps,
                step=o.step, width=o.width, matches=o.matches, rescore=o.rescore,
                stages=_stages(panel[a:b], o) if stages is None else stages.rows(a, b))
        elif o.selection == "composite" and estimate is not None:
            # the HMM runs on the K composite haplotypes matched to the current estimate (a
            # first round's states come by conflicts: an unphased genotype matches too loosely)
            comp = composite_panel(panel[a:b], est[a:b], allowed=allowed, states=o.states, genotype=False,
                                   step=o.step, width=o.width, matches=o.matches)
            _phase_kernel(comp, d[a:b], first_alt[a:b], cm[a:b], np.ones(comp.shape[1], np.bool_),
                          int(np.count_nonzero(allowed)), comp.shape[1], o.block, o.margin, o.ne, o.eps, est[a:b],
                          False, hap[a:b], pp[a:b])
        else:
            _phase_kernel(panel[a:b], d[a:b], first_alt[a:b], cm[a:b], allowed, 0, o.states, o.block, o.margin,
                          o.ne, o.eps, est[a:b], estimate is not None, hap[a:b], pp[a:b])
    return hap, pp, d < 0


def phased_composite(panel: np.ndarray, cm: np.ndarray, dosage: np.ndarray, *, allowed: np.ndarray, states: int,
                     step: int = 4, options: PhaseOptions | None = None) -> np.ndarray:
    """(L, K) composite haplotypes of one unphased sequence for imputation, built as Beagle
    does: phase its visible sites first (:func:`phase_rounds` with ``options``), then match
    the two phased haplotypes to the panel (:func:`~snpbag.retrieval.states.composite_panel`,
    ``step`` visible sites per step). dosage : (L,) 0/1/2 visible, −1 hidden."""
    o = options or IMPUTE_OPTIONS
    query, _ = phase_visible(panel, cm, dosage, allowed=allowed, options=o)
    return composite_panel(panel, query, allowed=allowed, states=states, genotype=False, step=step,
                           width=o.width, matches=o.matches)


class TypedPanel(NamedTuple):
    """A panel at a batch's typed sites as :func:`phase_visible` reads it, taken once for
    the batch (:func:`typed_panel`) rather than once per sample: at 40,000 haplotypes the
    rows' gather and the two stages' site frequencies over them cost more than a sample's
    phasing at a 20 % array."""

    typed: np.ndarray  # (T,) int64 ascending site indices
    panel: np.ndarray  # (T, H) int8 the panel's rows there
    stages: happhase.Stages | None  # their :func:`panel_stages`


def typed_panel(panel: np.ndarray, typed: np.ndarray, options: PhaseOptions) -> TypedPanel:
    """The :class:`TypedPanel` of site-major ``panel`` at the ascending sites ``typed``."""
    rows = np.ascontiguousarray(panel[typed])
    return TypedPanel(np.asarray(typed, dtype=np.int64), rows, panel_stages(rows, options))


def phase_visible(panel: np.ndarray, cm: np.ndarray, dosage: np.ndarray, *, allowed: np.ndarray,
                  options: PhaseOptions | None = None,
                  typed: TypedPanel | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One unphased sequence's visible sites phased against the panel (:func:`phase_rounds`
    with ``options``): (L, 2) int8 haplotypes, −1 at hidden sites, and (L,) float32 PP, NaN
    at hidden sites, homozygotes and the first heterozygote. dosage : (L,) 0/1/2 visible,
    −1 hidden. typed : the panel at the batch's typed sites (:func:`typed_panel`, taken with
    ``options``), read where they hold the visible sites (the same result as without)."""
    o = options or IMPUTE_OPTIONS
    vis = np.flatnonzero(dosage >= 0)
    calls = np.stack([np.minimum(dosage[vis], 1), dosage[vis] - np.minimum(dosage[vis], 1)], -1).astype(np.int8)
    rows = stages = None
    if typed is not None and typed.typed.size:
        idx = np.minimum(np.searchsorted(typed.typed, vis), typed.typed.size - 1)
        if np.array_equal(typed.typed[idx], vis):  # the sample's calls at some or all of the batch's sites
            whole = idx.size == typed.typed.size
            rows = typed.panel if whole else typed.panel[idx]
            stages = typed.stages if whole or typed.stages is None else typed.stages.subset(idx)
    if rows is None:
        rows = panel[vis]
    hap, pp, _ = phase_rounds(rows, cm[vis], calls, bounds=[(0, vis.size)], allowed=allowed, options=o,
                              rounds=o.rounds, stages=stages)
    query = np.full((panel.shape[0], 2), -1, dtype=np.int8)
    query[vis] = hap
    full = np.full(panel.shape[0], np.nan, dtype=np.float32)
    full[vis] = pp
    return query, full


def phase_rounds(panel, cm, genotypes, *, bounds, allowed, options: PhaseOptions, rounds: int = 2, stages=None):
    """:func:`phase_sample` ``rounds`` times, the states of each round chosen by similarity
    to the previous round's haplotypes (the first: by conflicts); once for the haploid
    model, whose updates iterate inside (``stages`` as :func:`phase_sample`)."""
    out = None
    for _ in range(1 if options.model == "haploid" else rounds):
        out = phase_sample(panel, cm, genotypes, bounds=bounds, allowed=allowed, options=options,
                           estimate=None if out is None else out[0], stages=stages)
    return out


def phase_with_panel(panel: np.ndarray, cm: np.ndarray, genotypes: np.ndarray, *, bounds, options: PhaseOptions,
                     exclude: np.ndarray | None = None, threads: int | None = None, on_sample=None,
                     stages: happhase.Stages | None = None) -> Phased:
    """Phase (n, L, 2) calls against a site-major (L, H) panel; ``exclude[i]``: the panel
    genome row of sample i (−1: none), whose haplotypes it may not copy; ``stages``: the
    panel's :func:`panel_stages` when already taken (batches of samples against one panel)."""
    n = genotypes.shape[0]
    nh = panel.shape[1]
    stages = panel_stages(panel, options) if stages is None else stages

    def one(i):
        allowed = np.ones(nh, dtype=np.bool_)
        if exclude is not None and exclude[i] >= 0:
            allowed[2 * exclude[i]:2 * exclude[i] + 2] = False
        out = phase_rounds(panel, cm, genotypes[i], bounds=bounds, allowed=allowed, options=options,
                           rounds=options.rounds, stages=stages)
        if on_sample is not None:
            on_sample(1)
        return out

    return _collect(_pool_map(one, n, threads))


def panel_stages(panel: np.ndarray, options: PhaseOptions) -> happhase.Stages | None:
    """What the haploid model takes once per panel (None for the pair model or one stage)."""
    return _stages(panel, options) if options.model == "haploid" else None


def _stages(panel: np.ndarray, options: PhaseOptions, common: np.ndarray | None = None) -> happhase.Stages | None:
    """The haploid model's two stages of a panel (None: one stage, ``rare`` 0); ``common``:
    the first stage's sites when already chosen (else by ``options.rare``)."""
    if options.rare <= 0:
        return None
    return happhase.split_stages(panel, happhase.common_sites(panel, rare=options.rare) if common is None else common)


def _collect(results) -> Phased:
    if not results:
        return Phased(np.zeros((0, 0, 2), np.int8), np.zeros((0, 0), np.float32), np.zeros((0, 0), bool))
    return Phased(np.stack([r[0] for r in results]), np.stack([r[1] for r in results]),
                  np.stack([r[2] for r in results]))


def unphased_panel(genotypes: np.ndarray) -> np.ndarray:
    """(L, 2n) site-major panel of unphased calls: homozygous alleles as they are,
    heterozygous and missing alleles as 2 ("0 or 1"), the start of cohort phasing."""
    g = np.asarray(genotypes)
    d = dosages(g)
    code = np.where(d == 0, 0, np.where(d == 2, 1, 2)).astype(np.int8)  # (n, L)
    return np.ascontiguousarray(np.repeat(code.T, 2, axis=1))


#: Samples re-phased together in cohort mode; the next batch copies their new haplotypes
#: (faster convergence than updating all at once). Fixed, so the thread count does not
#: change the result.
COHORT_BATCH = 16


def phase_cohort(genotypes: np.ndarray, cm: np.ndarray, *, bounds, options: PhaseOptions, seed: int = 0,
                 keep: np.ndarray | None = None, threads: int | None = None, on_sample=None) -> Phased:
    """Phase (n, L, 2) calls with the cohort as its own reference (module doc).

    keep : (n,) bool, samples whose calls are already phased and complete: they are copied
        from as they are and not phased again.
    on_sample : called with 1 per sample phased (over all iterations).
    """
    g = np.asarray(genotypes)
    n = g.shape[0]
    if n < 2:
        raise InputError(f"cohort-only phasing needs at least 2 samples, got {n}; give a reference panel (--ref)")
    keep = np.zeros(n, bool) if keep is None else np.asarray(keep, bool)
    hap = g.copy()
    panel = unphased_panel(g)
    # the first stage's sites by the unphased cohort's frequencies, kept as the panel changes
    common = happhase.common_sites(panel, rare=options.rare) if options.model == "haploid" and options.rare > 0 \
        else None
    for i in np.flatnonzero(keep):
        panel[:, 2 * i:2 * i + 2] = g[i]
    # the order samples are first phased in: the earlier ones give the later ones phased
    # haplotypes to copy in the first iteration
    todo = np.random.default_rng(seed).permutation(np.flatnonzero(~keep))
    result: list = [None] * todo.size
    for it in range(options.iterations):
        for b0 in range(0, todo.size, COHORT_BATCH):
            batch = todo[b0:b0 + COHORT_BATCH]
            stages = None if common is None else _stages(panel, options, common)

            def one(k, batch=batch, it=it, stages=stages):
                i = batch[k]
                allowed = np.ones(2 * n, dtype=np.bool_)
                allowed[2 * i:2 * i + 2] = False  # never copy itself
                out = phase_sample(panel, cm, g[i], bounds=bounds, allowed=allowed, options=options,
                                   estimate=hap[i] if it else None, stages=stages)
                if on_sample is not None:
                    on_sample(1)
                return out

            for k, out in enumerate(_pool_map(one, batch.size, threads)):
                i = batch[k]
                hap[i] = out[0]
                panel[:, 2 * i:2 * i + 2] = out[0]
                result[b0 + k] = out
    pp = np.full(g.shape[:2], np.nan, dtype=np.float32)
    filled = np.zeros(g.shape[:2], bool)
    for k, i in enumerate(todo):
        pp[i], filled[i] = result[k][1], result[k][2]
    return Phased(hap, pp, filled)


@njit(cache=True, nogil=True, fastmath=True)
def _masses(A, B, x, K):  # pragma: no cover - compiled
    """(m00, m10, m01, m11): mass of A·B on the pairs by (first copy's, second copy's) allele;
    pairs with an unknown allele (2) count in none."""
    m00 = m10 = m01 = m11 = 0.0
    for i in range(K):
        if x[i] == 2:
            continue
        for j in range(K):
            if x[j] == 2:
                continue
            v = np.float64(A[i, j]) * np.float64(B[i, j])  # float32 products underflow
            if x[i] == 1:
                if x[j] == 1:
                    m11 += v
                else:
                    m10 += v
            elif x[j] == 1:
                m01 += v
            else:
                m00 += v
    return m00, m10, m01, m11


@njit(cache=True, nogil=True, fastmath=True)
def _restrict(src, dst, x, K):  # pragma: no cover - compiled
    """dst = src on the pairs (ALT, REF) at the site whose candidate alleles are x, else 0;
    returns the kept mass."""
    z = 0.0
    for i in range(K):
        for j in range(K):
            v = src[i, j] if (x[i] == 1 and x[j] == 0) else 0.0
            dst[i, j] = v
            z += v
    return z


@njit(cache=True, nogil=True)
def _select_by_conflicts(panel, g, w0, w1, v0, v1, allowed, K, out):  # pragma: no cover - compiled
    """out[:K] = the K allowed haplotypes with the fewest opposite-homozygote conflicts on
    sites [w0, w1), ties by conflicts on [v0, v1), then a fixed hash: the imputation
    model's rule (:func:`snpbag.retrieval.haplotypes.select_states`), counted per window
    rather than from running counts, whose (sites × haplotypes) table does not fit at
    sequencing density."""
    nh = panel.shape[1]
    near = np.zeros(nh, dtype=np.int64)
    wide = np.zeros(nh, dtype=np.int64)
    for s in range(v0, v1):
        gt = g[s]
        if gt != 0 and gt != 2:
            continue
        bad = 1 - gt // 2  # the allele that conflicts
        inside = w0 <= s < w1
        for h in range(nh):
            if panel[s, h] == bad:
                wide[h] += 1
                if inside:
                    near[h] += 1
    rank_states(near, wide, np.int64(v1 - v0 + 1), allowed, K, out)


@njit(cache=True, nogil=True)
def _by_mismatch(panel, est, c, w0, w1, allowed, taken):  # pragma: no cover - compiled
    """Haplotypes ordered by mismatches to estimated haplotype c on [w0, w1), ties by hash
    (the allowed and not yet taken first)."""
    nh = panel.shape[1]
    mm = np.zeros(nh, dtype=np.int64)
    for s in range(w0, w1):
        a = est[s, c]
        for h in range(nh):
            if panel[s, h] != a:
                mm[h] += 1
    key = np.empty(nh, dtype=np.int64)
    for h in range(nh):
        key[h] = (mm[h] << 20) | tie_hash(h) if allowed[h] and not taken[h] else np.iinfo(np.int64).max
    return np.argsort(key)


@njit(cache=True, nogil=True)
def _select_by_estimate(panel, g, est, c0, c1, w0, w1, allowed, K, out):  # pragma: no cover - compiled
    """out[:K] = for each of the two estimated haplotypes ``est`` (L, 2), the allowed panel
    haplotypes with the fewest mismatches to it on [w0, w1) (no repeats), ties by a fixed
    hash — the states SHAPEIT and Beagle condition on. A quarter of K is kept back for the
    block's heterozygous sites [c0, c1) where no state carries one of the two alleles: the
    carrier of that allele closest to the estimated haplotype that carries it (over 16
    sites either side) is added, so the site has a copying explanation (a window's best
    matches often all miss a rare allele a closer relative carries locally)."""
    nh = panel.shape[1]
    taken = np.zeros(nh, dtype=np.bool_)
    n = 0
    spare = K // 4
    for c in range(2):
        order = _by_mismatch(panel, est, c, w0, w1, allowed, taken)
        want = (K - spare) // 2 if c == 0 else K - spare - n
        for i in range(want):
            out[n] = order[i]
            taken[order[i]] = True
            n += 1
    L = panel.shape[0]
    for s in range(c0, c1):
        if n == K:
            break
        if g[s] != 1:
            continue
        n1 = 0
        for i in range(n):
            n1 += panel[s, out[i]] == 1
        if 0 < n1 < n:
            continue
        a = 0 if n1 == n else 1  # the allele no state carries
        c = 0 if est[s, 0] == a else 1
        order = _by_mismatch(panel, est, c, max(0, s - 16), min(L, s + 17), allowed, taken)
        for i in range(nh):
            h = order[i]
            if not allowed[h] or taken[h]:
                break
            if panel[s, h] == a:
                out[n] = h
                taken[h] = True
                n += 1
                break
    if n < K:  # the spare slots not needed: more of the best matches
        order = _by_mismatch(panel, est, 0, w0, w1, allowed, taken)
        for i in range(K - n):
            out[n] = order[i]
            n += 1


@njit(cache=True, nogil=True)
def _place(hap, s, alt_hap):  # pragma: no cover - compiled
    hap[s, alt_hap] = 1
    hap[s, 1 - alt_hap] = 0


@njit(cache=True, nogil=True, fastmath=True)
def _phase_kernel(panel, g, first_alt, cm, allowed, n_ref, K, block, margin, ne, eps, est, use_est, hap, pp):  # pragma: no cover
    """hap, pp of one sequence (every site in the HMM; missing calls emit uniformly); states
    chosen by conflicts, or by similarity to the estimated haplotypes ``est`` if ``use_est``;
    ``n_ref`` haplotypes in the switch probability (0: the allowed ones of ``panel``)."""
    L, nh = panel.shape
    n_allowed = count_allowed(allowed)
    K = min(K, n_allowed)
    if n_ref > 0:
        n_allowed = n_ref
    vis = np.arange(L)
    cand = np.empty(K, dtype=np.int64)
    W = min(L, block + 2 * margin)
    alpha = np.empty((W, K, K), dtype=np.float32)
    beta = np.empty((W, K, K), dtype=np.float32)
    emit = np.empty((K, K), dtype=np.float32)
    gamma = np.empty((K, K), dtype=np.float32)
    tmp = np.empty((K, K), dtype=np.float32)
    rsum = np.empty(K, dtype=np.float32)
    csum = np.empty(K, dtype=np.float32)
    x = np.empty(K, dtype=np.int64)
    ev = np.empty((3, K), dtype=np.float32)  # row 2: an unphased panel heterozygote (emission_rows)
    hit, miss = np.float32(1.0 - eps), np.float32(eps / 2.0)
    seen_het = False  # a typed heterozygote earlier in the sequence (PP applies after it)
    conf = np.ones(L, dtype=np.float32)  # a het's P(orientation relative to its anchor is right)
    is_anchor = np.zeros(L, dtype=np.bool_)
    explained = np.ones(L, dtype=np.bool_)
    n_blocks = (L + block - 1) // block
    for b in range(n_blocks):
        c0 = b * block
        c1 = min(L, c0 + block)
        w0 = max(0, c0 - margin)
        r = c0 - 1  # the window reaches back to the last anchor, so the block's first het has a reference
        while r >= 0 and not is_anchor[r]:
            r -= 1
        if 0 <= r < w0:
            w0 = r
        w1 = min(L, c1 + margin)
        if w1 - w0 > alpha.shape[0]:
            alpha = np.empty((w1 - w0, K, K), dtype=np.float32)
            beta = np.empty((w1 - w0, K, K), dtype=np.float32)
        if use_est:
            _select_by_estimate(panel, g, est, c0, c1, w0, w1, allowed, K, cand)
        else:
            _select_by_conflicts(panel, g, w0, w1, max(0, w0 - 2 * margin), min(L, w1 + 2 * margin), allowed, K, cand)
        n = w1 - w0
        forward(panel, g, cm, vis, w0, n, cand, K, ne, n_allowed, hit, miss, x, ev, rsum, alpha)
        backward(panel, g, cm, vis, w0, n, cand, K, ne, n_allowed, hit, miss, x, ev, rsum, emit, beta)
        ref = False  # gamma holds the forward conditioned on the anchor's ALT on copy 1
        ref_hap = 0  # the output haplotype that holds that ALT
        prev = 1.0  # P(the previous het's printed orientation relative to the anchor is right)
        for t in range(c1 - w0):
            s = w0 + t
            if ref and t > 0:
                emission_rows(panel, s, g[s], cand, K, hit, miss, x, ev)
                advance_conditioned(gamma, tmp, ev, x, K, switch_rho(cm, s - 1, s, ne, n_allowed), rsum, csum)
                gamma[:, :] = tmp
                normalise(gamma, K)
            alleles_at(panel, s, cand, K, x)
            gt = g[s]
            if s >= c0:
                if gt == 0 or gt == 2:
                    hap[s, 0] = hap[s, 1] = gt // 2
                elif gt == 1:
                    if ref:
                        m00, m10, m01, m11 = _masses(gamma, beta[t], x, K)
                        p = m10 / (m10 + m01) if m10 + m01 > 0 else 0.5
                        _place(hap, s, ref_hap if p >= 0.5 else 1 - ref_hap)
                        conf[s] = max(p, 1.0 - p)
                        pp[s] = conf[s] * prev + (1.0 - conf[s]) * (1.0 - prev)
                        # copying explains it by a genotype error rather than a het pair
                        explained[s] = m10 + m01 >= m00 + m11
                    else:  # nothing to orient it by: keep the input's order
                        hap[s, 0] = first_alt[s]
                        hap[s, 1] = 1 - first_alt[s]
                        if seen_het:
                            pp[s] = 0.5
                else:  # missing: the most probable allele sum, oriented like a typed het
                    if ref:
                        m00, m10, m01, m11 = _masses(gamma, beta[t], x, K)
                    else:
                        m00, m10, m01, m11 = _masses(alpha[t], beta[t], x, K)
                    if m10 + m01 >= m00 and m10 + m01 >= m11:
                        if ref:
                            p = m10 / (m10 + m01) if m10 + m01 > 0 else 0.5
                            _place(hap, s, ref_hap if p >= 0.5 else 1 - ref_hap)
                            c = max(p, 1.0 - p)
                            pp[s] = c * prev + (1.0 - c) * (1.0 - prev)
                        else:
                            _place(hap, s, 0)
                    else:
                        a = 1 if m11 > m00 else 0
                        hap[s, 0] = hap[s, 1] = a
            if gt == 1:  # the next anchor? (decided in this block's core, replayed in the next block's margin)
                seen_het = True
                prev = conf[s]
                if s >= c0:
                    # a het the copying model explains as a genotype error says nothing about the
                    # phase of the next ones: they are phased against the last anchor (a flip, not
                    # a switch, where its own guess is wrong)
                    is_anchor[s] = not ref or explained[s]
                # (no candidate explains it in this window: keep the last anchor)
                if is_anchor[s] and _restrict(alpha[t], tmp, x, K) > 0:
                    ref = True
                    ref_hap = 0 if hap[s, 0] == 1 else 1
                    prev = 1.0
                    gamma[:, :] = tmp
                    normalise(gamma, K)
