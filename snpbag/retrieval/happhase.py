"""Phasing with a haploid copying model, as Beagle 5 phases.

The pair model (:mod:`snpbag.retrieval.phasing`) tracks an ordered pair of copied
haplotypes, K² states per site; here each of the sample's two current haplotypes has its
own haploid Li–Stephens HMM over the same K composite haplotypes, O(K) per site, so K can
be in the hundreds for the CPU of a few dozen pair states (Browning, Tian, Zhou & Browning
2021, "Fast two-stage phasing of large-scale sequence data", AJHG 108:1880; Beagle's
``PhaseBaum1``; SHAPEIT and Eagle update one haplotype pair estimate the same way).

**The update.** The hets still to decide ("unphased": every het but the sequence's first,
at the start) cut the sequence into segments, each from one unphased het to the site
before the next. Three haploid HMMs run over the same K states: one on each current
haplotype (an emission of 1 − ε where the state carries the haplotype's allele, ε
otherwise), one on the genotype's homozygous sites only (hets and missing calls emit 1).
At each unphased het u, both haplotype forwards restart from the homozygous-only one at the
previous unphased het, and both backwards restart from the homozygous-only one at the next;
so haplotype c's forward f_c covers the segment before u with c's alleles, and its
backward b_c the segment from u on. With p_cd = Σ_k f_c(k)·b_d(k), keeping the segments as
they are has likelihood p₁₁·p₂₂, crossing them p₁₂·p₂₁; the segment from u on is swapped
when crossing wins, and the het's confidence is max(p₁₁p₂₂, p₁₂p₂₁) / (p₁₁p₂₂ + p₁₂p₂₁):
the probability that its phase relative to the segment before — relative to the previous
het, when the hets in between are right — is right, its PP. A decision reads only the
haplotypes between its two neighbouring unphased hets (and the homozygous genotypes
everywhere), so a wrong phase further away cannot bias it.

**Iterations.** The first update's states are the composite haplotypes matched to the
genotype (:func:`~snpbag.retrieval.states.composite_panel`, conflicts); the next
``restate − 1`` ones' to the current two haplotypes; later updates keep the last states
(matching costs O(sites × panel haplotypes), an update O(sites × K)). ``burnin`` updates
decide every het afresh; then each of ``fixing`` updates fixes the most confident share of
the hets still unphased (Beagle's "leave-unphased proportion": 1 − j/fixing of them stay
undecided after the j-th), so later decisions read ever longer haplotype segments: the
fixed hets inside them count as known phase. The last update decides the rest.

**Two stages** (Beagle's two-stage phasing, in a simple form): with ``common`` sites given
(the panel's minor allele frequency at least ``PhaseOptions.rare``), the iterations run on
those sites only (at full density most sites are rare and few hets are); then one pass of
the two haplotypes' HMMs over every site, on the last states (matched on the common sites,
read at every site), with the first stage's haplotypes as known, orients each rare het: its
ALT goes to haplotype 1 when p₁(1 − p₂) ≥ p₂(1 − p₁), p_c being haplotype c's posterior
P(ALT) with the het itself unread (a "soft" het of :func:`update`). A caller phasing many
samples against one panel takes the panel as the stages read it once (:class:`Stages`): the
common sites' rows, where the states are matched, and the rare sites' few minor-allele
carriers, from which the second stage's states are laid out.

**PP** is the confidence of the update that fixed a het, which read only the segments
between its unphased neighbours at the time. Imputation draws phasings from PP, and there
it reads each het's phase relative to all the sites before it, the two final haplotypes
read whole (``PhaseOptions.rescore``, :func:`whole_confidence`): on a 5 % array of the
3 Mb benchmark the decisions' mean 1 − PP was 0.0106 at a switch rate of 0.0076, the
rescored 0.0076.

**Missing calls** are imputed per haplotype, from its HMM's posterior (the forward times
the backward stored at the site, swapped with its segment): the allele with the larger
probability. Typed genotypes are never changed, only ordered. A composite panel may hold
allele 2 (an unphased het of cohort phasing's start): it emits ½ for either allele.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from snpbag.retrieval.copying import switch_rho
from snpbag.retrieval.states import advance_segments, composite_segments, fill_composite, segment_cursor


#: The HMM kernels' fast-math flags: no reassociation, so a sum's order is the code's, not
#: the vectoriser's (which differed between a kernel compiled in the process and one loaded
#: from numba's cache); :func:`_lane_sum` keeps the sums vectorised.
FAST = {"nsz", "arcp", "afn", "ninf", "nnan", "contract"}


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def _lane_sum(x, K):  # pragma: no cover - compiled
    """Σ x[:K] in float32 over 8 fixed lanes (independent chains, which vectorise without
    reassociation), then the lanes in a fixed order."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0.0)
    end = K - K % 8
    for k in range(0, end, 8):
        a0 += x[k]
        a1 += x[k + 1]
        a2 += x[k + 2]
        a3 += x[k + 3]
        a4 += x[k + 4]
        a5 += x[k + 5]
        a6 += x[k + 6]
        a7 += x[k + 7]
    t = ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7))
    for k in range(end, K):
        t += x[k]
    return t


@njit(cache=True, nogil=True, fastmath=FAST)
def _forward_step(f, row, a, rho, hit, miss, K):  # pragma: no cover - compiled
    """f = emission × transition(f), normalised; f sums to 1 on entry. row : (K,) the
    states' alleles at the site; a : the haplotype's allele (−1: emits 1). In float32
    arithmetic, like the stored f: twice the vector lanes of float64, and renormalised at
    every site, so nothing underflows."""
    stay = np.float32(1.0 - rho)
    jump = np.float32(rho / K)
    if a < 0:
        for k in range(K):
            f[k] = stay * f[k] + jump
        return
    gain = np.float32(hit - miss)
    either = np.float32(0.5 - miss)
    miss = np.float32(miss)
    for k in range(K):  # branch-free, so it vectorises: x == 2 (either) emits ½
        x = row[k]
        f[k] = (miss + gain * (x == a) + either * (x == 2)) * (stay * f[k] + jump)
    inv = np.float32(1.0 / _lane_sum(f, K))
    for k in range(K):
        f[k] *= inv


@njit(cache=True, nogil=True, fastmath=FAST)
def _backward_step(b, row, a, rho, hit, miss, K):  # pragma: no cover - compiled
    """b (the backward at site s) becomes the backward at s − 1, normalised: the emission
    at s (allele a, −1: emits 1) and the transition from s − 1 to s (ρ); float32 as
    :func:`_forward_step`."""
    if a >= 0:
        gain = np.float32(hit - miss)
        either = np.float32(0.5 - miss)
        miss = np.float32(miss)
        for k in range(K):
            x = row[k]
            b[k] *= miss + gain * (x == a) + either * (x == 2)
    tot = _lane_sum(b, K)
    stay = np.float32((1.0 - rho) / tot)
    jump = np.float32(rho / K)
    for k in range(K):
        b[k] = stay * b[k] + jump


@njit(cache=True, nogil=True, fastmath=FAST)
def _dot(u, v, K):  # pragma: no cover - compiled
    """Σ u·v over K in float64, over 8 fixed lanes as :func:`_lane_sum`."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    end = K - K % 8
    for k in range(0, end, 8):
        a0 += np.float64(u[k]) * np.float64(v[k])
        a1 += np.float64(u[k + 1]) * np.float64(v[k + 1])
        a2 += np.float64(u[k + 2]) * np.float64(v[k + 2])
        a3 += np.float64(u[k + 3]) * np.float64(v[k + 3])
        a4 += np.float64(u[k + 4]) * np.float64(v[k + 4])
        a5 += np.float64(u[k + 5]) * np.float64(v[k + 5])
        a6 += np.float64(u[k + 6]) * np.float64(v[k + 6])
        a7 += np.float64(u[k + 7]) * np.float64(v[k + 7])
    t = ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7))
    for k in range(end, K):
        t += np.float64(u[k]) * np.float64(v[k])
    return t


@njit(cache=True, nogil=True, fastmath=FAST)
def _keep_cross(f1, f2, back, K):  # pragma: no cover - compiled
    """(keep, cross): the two haplotypes' forwards against their own backwards ``back[0]``,
    ``back[1]`` (from this site on), and against each other's: the phase as it is, and
    swapped from here on."""
    h1 = back[0]
    h2 = back[1]
    return _dot(f1, h1, K) * _dot(f2, h2, K), _dot(f1, h2, K) * _dot(f2, h1, K)


@njit(cache=True, nogil=True, fastmath=FAST)
def _alt_prob(f, b, row, K):  # pragma: no cover - compiled
    """P(ALT) of a haplotype under posterior ∝ f·b over states with alleles row (2: ½)."""
    z = 0.0
    p = 0.0
    for k in range(K):
        v = np.float64(f[k]) * np.float64(b[k])
        z += v
        x = row[k]
        p += v if x == 1 else (0.5 * v if x == 2 else 0.0)
    return p / z if z > 0 else 0.5


@njit(cache=True, nogil=True)
def _hom(gt):  # pragma: no cover - compiled
    """The allele of a homozygous genotype, −1 for a het or a missing call."""
    return gt // 2 if gt == 0 or gt == 2 else -1


@njit(cache=True, nogil=True, fastmath=FAST)
def update(comp, d, hap, unph, soft, rho, eps, conf, alt):  # pragma: no cover - compiled
    """One update of one sequence (module doc), in place.

    comp : (L, K) int8 the states' alleles; d : (L,) int8 dosage, −1 missing;
    hap : (L, 2) int8 the current haplotypes (typed alleles; missing calls are overwritten
    with their imputed alleles); unph : (L,) bool the hets to decide (never the first het);
    rho : (L,) switch probability from site s − 1 to s (rho[0] = 1); eps : mismatch
    probability; conf : (L,) float64, set at unphased hets to the decision's confidence
    and at soft hets to their orientation's; alt : (L, 2) float64, set at missing calls and
    soft hets to each haplotype's P(ALT); soft : (L,) bool hets read like missing calls and
    oriented by those (the ALT on haplotype 1 when p₁(1 − p₂) ≥ p₂(1 − p₁)): the rare hets
    of the second stage.
    """
    L, K = comp.shape
    hit, miss = 1.0 - eps, eps
    slot = np.full(L, -1, dtype=np.int64)
    n = 0
    restarts = False  # any unphased het: else the homozygous-only HMM is never read
    for s in range(L):
        restarts |= unph[s]
        if unph[s] or d[s] < 0 or soft[s]:
            slot[s] = n
            n += 1
    saved = np.empty((max(n, 1), 2, K), dtype=np.float32)  # the two backwards at those sites
    b0 = np.full(K, 1.0 / K, dtype=np.float32)
    b1 = b0.copy()
    b2 = b0.copy()
    for s in range(L - 1, -1, -1):
        if d[s] < 0 or soft[s]:  # the backward at s, within its segment
            saved[slot[s], 0] = b1
            saved[slot[s], 1] = b2
        if s == 0:
            break
        row = comp[s]
        typed = d[s] >= 0 and not soft[s]
        if restarts:
            _backward_step(b0, row, _hom(d[s]), rho[s], hit, miss, K)
        _backward_step(b1, row, hap[s, 0] if typed else -1, rho[s], hit, miss, K)
        _backward_step(b2, row, hap[s, 1] if typed else -1, rho[s], hit, miss, K)
        if unph[s]:  # the segment from s on, then the homozygous-only backward before it
            saved[slot[s], 0] = b1
            saved[slot[s], 1] = b2
            b1[:] = b0
            b2[:] = b0
    f0 = np.full(K, 1.0 / K, dtype=np.float32)
    f1 = f0.copy()
    f2 = f0.copy()
    swap = False  # the current segment is swapped against the input estimate
    for s in range(L):
        row = comp[s]
        if unph[s]:
            keep, cross = _keep_cross(f1, f2, saved[slot[s]], K)
            swap = cross > keep
            conf[s] = max(keep, cross) / (keep + cross) if keep + cross > 0 else 0.5
            f1[:] = f0
            f2[:] = f0
        if swap:
            t = hap[s, 0]
            hap[s, 0] = hap[s, 1]
            hap[s, 1] = t
        typed = d[s] >= 0 and not soft[s]
        if restarts:
            _forward_step(f0, row, _hom(d[s]), rho[s], hit, miss, K)
        _forward_step(f1, row, hap[s, 0] if typed else -1, rho[s], hit, miss, K)
        _forward_step(f2, row, hap[s, 1] if typed else -1, rho[s], hit, miss, K)
        if not typed:
            c1 = 1 if swap else 0  # the stored backward of the haplotype now first
            p1 = _alt_prob(f1, saved[slot[s], c1], row, K)
            p2 = _alt_prob(f2, saved[slot[s], 1 - c1], row, K)
            alt[s, 0] = p1
            alt[s, 1] = p2
            if d[s] < 0:
                hap[s, 0] = 1 if p1 >= 0.5 else 0
                hap[s, 1] = 1 if p2 >= 0.5 else 0
            else:
                first = p1 * (1.0 - p2)
                second = p2 * (1.0 - p1)
                hap[s, 0] = 1 if first >= second else 0
                hap[s, 1] = 1 - hap[s, 0]
                conf[s] = max(first, second) / (first + second) if first + second > 0 else 0.5


@njit(cache=True, nogil=True, fastmath=FAST)
def whole_confidence(comp, d, hap, at, rho, eps, conf):  # pragma: no cover - compiled
    """conf[s] at every site where ``at`` (hets, never site 0) = P(the phase of the sites
    from s on relative to the sites before is as ``hap`` has it), each haplotype's HMM
    reading all its typed alleles either side: with f_c the forward of haplotype c up to
    s − 1 and b_c its backward from s on, keep = (f₁·b₁)(f₂·b₂), cross = (f₁·b₂)(f₂·b₁),
    conf = keep / (keep + cross). Nothing is swapped. Arguments as :func:`update`."""
    L, K = comp.shape
    hit, miss = 1.0 - eps, eps
    slot = np.full(L, -1, dtype=np.int64)
    n = 0
    for s in range(L):
        if at[s]:
            slot[s] = n
            n += 1
    saved = np.empty((max(n, 1), 2, K), dtype=np.float32)  # the two backwards from each such site on
    b1 = np.full(K, 1.0 / K, dtype=np.float32)
    b2 = b1.copy()
    for s in range(L - 1, 0, -1):
        row = comp[s]
        typed = d[s] >= 0
        _backward_step(b1, row, hap[s, 0] if typed else -1, rho[s], hit, miss, K)
        _backward_step(b2, row, hap[s, 1] if typed else -1, rho[s], hit, miss, K)
        if at[s]:
            saved[slot[s], 0] = b1
            saved[slot[s], 1] = b2
    f1 = np.full(K, 1.0 / K, dtype=np.float32)
    f2 = f1.copy()
    for s in range(L):
        row = comp[s]
        if at[s]:
            keep, cross = _keep_cross(f1, f2, saved[slot[s]], K)
            conf[s] = keep / (keep + cross) if keep + cross > 0 else 0.5
        typed = d[s] >= 0
        _forward_step(f1, row, hap[s, 0] if typed else -1, rho[s], hit, miss, K)
        _forward_step(f2, row, hap[s, 1] if typed else -1, rho[s], hit, miss, K)


@njit(cache=True, nogil=True)
def _switch_probs(cm, ne, n_ref, rho):  # pragma: no cover - compiled
    for s in range(1, cm.size):
        rho[s] = switch_rho(cm, s - 1, s, ne, n_ref)


def switch_probs(cm: np.ndarray, *, ne: float, n_ref: int) -> np.ndarray:
    """(L,) ρ from each site's predecessor (ρ[0] = 1: the first site's states are uniform)."""
    rho = np.ones(cm.size)
    _switch_probs(np.asarray(cm, dtype=np.float64), float(ne), int(n_ref), rho)
    return rho


def common_sites(panel: np.ndarray, *, rare: float) -> np.ndarray:
    """(L,) bool, the sites of the first stage: minor allele frequency in the panel at least
    ``rare`` (allele 2, either, counts ½)."""
    p = (panel == 1).mean(1) + 0.5 * (panel == 2).mean(1)
    return np.minimum(p, 1 - p) >= rare


@dataclass(frozen=True)
class Stages:
    """A panel as the two stages read it, taken once for all the samples that copy from it
    (:func:`split_stages`).

    common : (L,) bool the first stage's sites; panel : (C, H) int8 ``panel[common]``,
    C-contiguous (the first stage matches and lays out its states there);
    major : (L,) int8 each other site's most frequent allele, and at those sites the
    haplotypes whose allele differs, in CSR form: hap[ptr[s]:ptr[s + 1]] with their
    allele[...] (few, the sites being rare). The second stage lays its states out from
    these at the rare sites instead of gathering from the whole panel row, which at full
    density reads the whole panel from memory for every sample.
    """

    common: np.ndarray
    panel: np.ndarray
    major: np.ndarray
    ptr: np.ndarray
    hap: np.ndarray
    allele: np.ndarray

    def rows(self, a: int, b: int) -> Stages:
        """The same for the sites a..b−1 (one chromosome)."""
        c0, c1 = int(np.count_nonzero(self.common[:a])), int(np.count_nonzero(self.common[:b]))
        e0, e1 = int(self.ptr[a]), int(self.ptr[b])
        return Stages(self.common[a:b], self.panel[c0:c1], self.major[a:b], self.ptr[a:b + 1] - e0,
                      self.hap[e0:e1], self.allele[e0:e1])

    def subset(self, idx: np.ndarray) -> Stages:
        """The same for the sites ``idx`` (ascending indices into these sites): a sample's
        visible sites among its batch's typed ones, without reading the panel again (every
        field is per site, so this equals :func:`split_stages` of the subset's rows)."""
        idx = np.asarray(idx, dtype=np.int64)
        common = self.common[idx]
        rank = np.cumsum(self.common) - 1  # each common site's row of ``panel``
        lo, n = self.ptr[idx], self.ptr[idx + 1] - self.ptr[idx]
        ptr = np.zeros(idx.size + 1, dtype=self.ptr.dtype)
        np.cumsum(n, out=ptr[1:])
        at = np.repeat(lo - ptr[:-1], n) + np.arange(ptr[-1])  # the listed calls of the kept sites
        return Stages(common, np.ascontiguousarray(self.panel[rank[idx[common]]]), self.major[idx], ptr,
                      self.hap[at], self.allele[at])


@njit(cache=True, nogil=True)
def _minor_calls(panel, common):  # pragma: no cover - compiled
    """(major, ptr, hap, allele) of :class:`Stages` at the sites not ``common``."""
    L, H = panel.shape
    major = np.zeros(L, dtype=np.int8)
    ptr = np.zeros(L + 1, dtype=np.int64)
    for s in range(L):
        n = 0
        if not common[s]:
            ones = 0
            for h in range(H):
                ones += panel[s, h] == 1
            major[s] = 1 if 2 * ones > H else 0
            for h in range(H):
                n += panel[s, h] != major[s]
        ptr[s + 1] = ptr[s] + n
    hap = np.empty(ptr[L], dtype=np.int64)
    allele = np.empty(ptr[L], dtype=np.int8)
    for s in range(L):
        e = ptr[s]
        if not common[s]:
            for h in range(H):
                if panel[s, h] != major[s]:
                    hap[e] = h
                    allele[e] = panel[s, h]
                    e += 1
    return major, ptr, hap, allele


def split_stages(panel: np.ndarray, common: np.ndarray) -> Stages:
    """The :class:`Stages` of site-major (L, H) ``panel`` with first-stage sites ``common``."""
    common = np.asarray(common, dtype=np.bool_)
    return Stages(common, np.ascontiguousarray(panel[common]), *_minor_calls(panel, common))


@njit(cache=True, nogil=True)
def _lay_out(comp, common, major, ptr, ex_hap, ex_allele, seg_start, seg_hap, n_seg, H, out):  # pragma: no cover
    """out (L, K) = the states' alleles at every site: the first stage's rows ``comp`` at
    the common sites, and at the others the major allele but where the slot's haplotype
    (slot k copies seg_hap[k, j] from site seg_start[k, j] on) is listed in the CSR
    exceptions; the same rows as :func:`~snpbag.retrieval.states.fill_composite` from the
    whole panel, read from an (H,) scratch row that stays in cache."""
    L, K = out.shape
    mark = np.full(H, -1, dtype=np.int8)  # the allele of a listed haplotype at the site, else −1
    cur, hap, nxt = segment_cursor(seg_start, n_seg, K, L)
    event = 0
    c = 0
    for s in range(L):
        if s >= event:
            event = advance_segments(s, cur, hap, nxt, seg_start, seg_hap, n_seg, L)
        o = out[s]
        if common[s]:
            o[:] = comp[c]
            c += 1
            continue
        for e in range(ptr[s], ptr[s + 1]):
            mark[ex_hap[e]] = ex_allele[e]
        m = major[s]
        for k in range(K):
            v = mark[hap[k]]
            o[k] = v if v >= 0 else m
        for e in range(ptr[s], ptr[s + 1]):
            mark[ex_hap[e]] = -1


def phase_sequence(panel: np.ndarray, cm: np.ndarray, d: np.ndarray, first_alt: np.ndarray, *, allowed: np.ndarray,
                   n_ref: int, states: int, burnin: int, fixing: int, restate: int, ne: float, eps: float, step: int,
                   width: int, matches: int, stages: Stages | None = None,
                   rescore: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Phase one sequence (module doc): (haplotypes (L, 2) int8, pp (L,) float32).

    panel : (L, H) int8 site-major alleles (2: either); cm : (L,) genetic positions;
    d : (L,) int8 dosage, −1 missing; first_alt : (L,) the input's first allele (the order
    kept where nothing decides); allowed : (H,) bool the haplotypes that may be copied;
    n_ref : H in the switch probability; states : K composite haplotypes; stages : the
    first stage's sites and the panel as the stages read it (:func:`split_stages`; None:
    all sites, one stage); the rest as :class:`~snpbag.retrieval.phasing.PhaseOptions`.
    """
    L = d.size
    hap = np.zeros((L, 2), dtype=np.int8)
    pp = np.full(L, np.nan, dtype=np.float32)
    het = d == 1
    hap[het, 0] = first_alt[het]
    hap[het, 1] = 1 - first_alt[het]
    hom = (d == 0) | (d == 2)
    hap[hom] = (d[hom] // 2)[:, None]
    if L == 0:
        return hap, pp
    conf = np.full(L, 0.5)
    alt = np.full((L, 2), 0.5)
    kw = dict(allowed=allowed, states=states, step=step, width=width, matches=matches)
    common = None if stages is None else stages.common
    sites = np.arange(L) if common is None else np.flatnonzero(common)
    sub = (hap[sites], pp[sites], conf[sites], alt[sites])
    rho = switch_probs(cm, ne=ne, n_ref=n_ref)  # between every two sites: the second stage's and the rescore's
    comp = _first_stage(panel, stages, sites, d, *sub, rho if sites.size == L else
                        switch_probs(cm[sites], ne=ne, n_ref=n_ref), eps, burnin, fixing, restate, kw)
    hap[sites], pp[sites], conf[sites], alt[sites] = sub
    if sites.size < L:
        # the second stage: one pass over every site on the first stage's last states (matched
        # on its sites), its haplotypes as known; the rare hets are oriented and the missing
        # calls imputed from the two haplotypes' posteriors
        soft = het & ~common
        update(comp, d, hap, np.zeros(L, np.bool_), soft, rho, eps, conf, alt)
        pp[soft] = conf[soft]
        anchor = np.flatnonzero(het & common)[:1]  # the first stage's first het, its chain's origin
        before = np.flatnonzero(soft[:anchor[0]]) if anchor.size else anchor
        if before.size:
            # its phase relative to the rare het before it is right when that het's orientation is
            pp[anchor[0]] = conf[before[-1]]
    hets = np.flatnonzero(het)
    if rescore and hets.size > 1:  # every typed het's PP again, the whole two haplotypes read
        at = np.zeros(L, np.bool_)
        at[hets[1:]] = True
        whole_confidence(comp, d, hap, at, rho, eps, conf)
        pp[at] = conf[at]
    if hets.size:
        pp[hets[0]] = np.nan
    filled = np.flatnonzero((d < 0) & (hap[:, 0] != hap[:, 1]))
    if hets.size:
        filled = filled[filled > hets[0]]
    p1, p2 = alt[filled, 0], alt[filled, 1]
    p = np.where(hap[filled, 0] == 1, p1 * (1 - p2), p2 * (1 - p1))
    pp[filled] = p / np.maximum(p1 * (1 - p2) + p2 * (1 - p1), 1e-300)
    return hap, pp


def _first_stage(panel, stages, sites, d, hap, pp, conf, alt, rho, eps, burnin, fixing, restate, kw) -> np.ndarray:
    """``burnin`` + ``fixing`` updates of one sequence at ``sites`` (module doc), in place on
    the arrays of those sites; the states are matched (on those sites: ``stages.panel``, or
    ``panel`` without stages) again for the first ``restate`` updates, then kept. Returns
    the last states' alleles at every site of ``panel`` (L, K), which the second stage
    reads (:func:`_lay_out`)."""
    n = sites.size
    L = panel.shape[0]
    own = panel if stages is None else stages.panel
    d = d[sites]
    het = d == 1
    unph = het.copy()
    hets = np.flatnonzero(het)
    if hets.size:
        unph[hets[0]] = False
    soft = np.zeros(n, np.bool_)
    query = np.full((n, 2), -1, dtype=np.int8)
    iterations = burnin + fixing
    comp = full = None
    for it in range(iterations):
        if comp is None or it < restate:
            if it == 0:
                query[:, 0] = d
            else:
                query[:] = hap
            seg_start, seg_hap, n_seg = composite_segments(own, query[:, :1] if it == 0 else query,
                                                           genotype=it == 0, **kw)
            comp = np.empty((n, seg_start.shape[0]), dtype=np.int8)
            fill_composite(own, seg_start, seg_hap, n_seg, comp)
            if it == min(restate, iterations) - 1:
                full = comp
                if n < L:  # the segments' starts as sites of panel (the first ones start at 0)
                    at = np.concatenate([[0], sites[1:]]) if n else np.zeros(1, np.int64)
                    full = np.empty((L, comp.shape[1]), dtype=np.int8)
                    _lay_out(comp, stages.common, stages.major, stages.ptr, stages.hap, stages.allele,
                             at[seg_start], seg_hap, n_seg, panel.shape[1], full)
        update(comp, d, hap, unph, soft, rho, eps, conf, alt)
        pp[unph] = conf[unph]
        if it >= burnin and unph.any():
            left = (burnin + fixing - 1 - it) / fixing  # the share of the unphased hets kept undecided
            idx = np.flatnonzero(unph)
            order = idx[np.argsort(-conf[idx], kind="stable")]
            unph[order[:idx.size - int(round(left * idx.size))]] = False
    return full
