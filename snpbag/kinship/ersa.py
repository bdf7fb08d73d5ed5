"""ERSA: the likelihood of a pair's shared segments under each relationship degree (Huff et al. 2011).

A pair related through common ancestors d meioses apart shares, from them, a Poisson number of
segments with mean λ_A = a (r m + c) / 2^(d−1) · p(t), where r is the genome's genetic length in
Morgans (crossovers per meiosis), c the number of chromosomes (each adds a segment end),
a the number of common ancestors, m the meioses whose crossovers cut the shared stretches and
p(t) = exp(−m t / 100) the share of them longer than the detection threshold t cM; their
lengths above t are exponential with mean 100 / m cM. It also shares, like any two members of
its population, background segments: Poisson with mean λ_P, lengths above t exponential with
mean θ (:class:`Background`, fitted on unrelated pairs: what the detector finds between
genomes with no recent common ancestor, including its false runs). The related likelihood is
maximised over how many of the pair's segments are background — the shortest ones (ERSA's
Lr); the unrelated likelihood is the background alone (ERSA's Lp).

A degree k names several relationships with the same expected kinship 2^-(k+1); each has its
own (m, a) (:func:`relationship_types`), and the degree's likelihood is either their equal-weight
mixture (``types="all"``) or, like ERSA's maximisation over the background share, that of the
pair's most likely type (``"best"``: a relationship type is a nuisance parameter of the degree):

- full collateral (two common ancestors, e.g. first cousins at k = 3): d = m = k + 1, a = 2 —
  ERSA's only model (its d is this m);
- half collateral (one common ancestor, e.g. half siblings at k = 2): d = m = k, a = 1;
- lineal (one is the other's ancestor, e.g. grandparent at k = 2): d = k meioses but only
  m = k − 1 cut the segments (the ancestor's own genome is whole), a = 1 and
  λ_A = (r m + c) / 2^m (Hill and White 2013, Table 7).

Full siblings and parent–offspring (k = 1) share IBD1 and IBD2 stretches that the detector
(:mod:`snpbag.kinship.segments`) merges; the mixture at k = 1 (m = 1, 2) still outscores
every more distant degree on them, which is what a degree call needs.

References
----------
Huff CD et al. (2011) Maximum-likelihood estimation of recent shared ancestry (ERSA). Genome
Research 21:768-774.
Hill WG, White IMS (2013) Identification of pedigree relationship from genome sharing. G3 3:1553-1571.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from snpbag.errors import InputError
from snpbag.kinship.segments import Segments

#: ERSA's default detection threshold (cM) for dense SNP arrays; at ~20 SNPs per cM false runs need more.
ERSA_THRESHOLD = 2.5
#: Relationship types per degree (:class:`Model`): the equal mixture, the most likely type, ERSA's own.
TYPES = ("all", "best", "ersa")
#: Column names of :func:`pair_features`, after the per-degree log-likelihood ratios.
FEATURES = ("segments", "shared_cm")


@dataclass(frozen=True)
class Background:
    """Shared segments of unrelated pairs: ``rate`` per pair (λ_P), lengths above t of mean excess ``mean_excess`` (θ).

    Either a number each (one population, as ERSA assumes) or one per pair scored (:func:`per_pair`: a
    background per population, since a bottlenecked population shares many more segments than another).
    With ``tail_weight`` w > 0 the excess lengths are a mixture: (1 − w) exponential of mean θ and w
    exponential of mean ``tail_excess`` — background IBD from ancestors of many ages has a heavier tail
    than one exponential, and that tail is what a distant relative's few long segments are tested against.
    """

    rate: float | np.ndarray
    mean_excess: float | np.ndarray
    tail_weight: float | np.ndarray = 0.0
    tail_excess: float | np.ndarray = 1.0

    def to_dict(self) -> dict:
        return {f.name: np.asarray(getattr(self, f.name)).tolist() for f in fields(self)}

    def log_density(self, excess: np.ndarray) -> np.ndarray:
        """Log density of excess lengths (cM above t), broadcasting the parameters over rows (pairs, ...)."""
        def col(x):
            x = np.asarray(x, dtype=np.float64)
            return x.reshape(x.shape + (1,) * (excess.ndim - x.ndim)) if x.ndim else x
        theta, w, tail = col(self.mean_excess), col(self.tail_weight), col(self.tail_excess)
        with np.errstate(divide="ignore"):
            body = np.log1p(-w) - excess / theta - np.log(theta)
            heavy = np.log(w) - excess / tail - np.log(tail)
        return np.logaddexp(body, heavy)


def per_pair(backgrounds: dict[str, Background], group: np.ndarray) -> Background:
    """One background per pair: ``backgrounds[group[k]]`` for pair k (e.g. groups named by the pair's populations).

    Raises
    ------
    InputError : a group without a background.
    """
    missing = sorted(set(np.asarray(group).tolist()) - set(backgrounds))
    if missing:
        raise InputError(f"ERSA background: no unrelated pairs of group(s) {', '.join(map(str, missing[:5]))} "
                         "to fit one on")
    return Background(*(np.array([float(getattr(backgrounds[g], f.name)) for g in group]) for f in fields(Background)))


def fit_background(segments: Segments, *, threshold: float, components: int = 1) -> Background:
    """λ_P and the length law of unrelated pairs' segments of at least ``threshold`` cM (maximum likelihood: the
    mean count per pair; the mean excess length, or with ``components=2`` a two-exponential mixture by EM;
    floored so that pairs that share nothing still give a finite model).

    Raises
    ------
    InputError : no pairs, or ``components`` not 1 or 2.
    """
    if segments.n_pairs == 0:
        raise InputError("ERSA background: no unrelated pairs to fit it on")
    if components not in (1, 2):
        raise InputError(f"ERSA background components={components}: choose 1 or 2")
    lengths = segments.length_cm[segments.length_cm >= threshold]
    rate = max(lengths.size / segments.n_pairs, 1e-3)
    x = lengths - threshold
    theta = max(float(np.mean(x)) if lengths.size else 1.0, 0.1)
    if components == 1 or lengths.size < 20:
        return Background(rate, theta)
    w, t1, t2 = 0.1, theta / 2, 2 * theta  # EM from a short body and a long tail
    for _ in range(200):
        lb = np.log1p(-w) - x / t1 - np.log(t1)
        lt = np.log(w) - x / t2 - np.log(t2)
        r = np.exp(lt - np.logaddexp(lb, lt))  # responsibility of the tail
        w = float(np.clip(r.mean(), 1e-4, 0.5))
        t1 = max(float((1 - r) @ x / max((1 - r).sum(), 1e-9)), 0.05)
        t2 = max(float(r @ x / max(r.sum(), 1e-9)), t1)
    return Background(rate, t1, w, t2)


@dataclass(frozen=True)
class Model:
    """What the likelihood needs: threshold t (cM), genome length (cM), chromosomes, background, degrees 1..max."""

    threshold: float
    genome_cm: float
    chromosomes: int
    background: Background
    max_degree: int = 12
    types: str = "all"  # "all": the mixture of relationship types per degree; "best": its most likely type;
    # "ersa": full collateral only

    def __post_init__(self) -> None:
        if self.threshold < 0 or self.genome_cm <= 0 or self.chromosomes < 1 or self.max_degree < 1:
            raise InputError(f"ERSA model threshold={self.threshold}, genome_cm={self.genome_cm}, chromosomes="
                             f"{self.chromosomes}, max_degree={self.max_degree}: need threshold >= 0, a positive "
                             "genome length, >= 1 chromosome and degree")
        if self.types not in TYPES:
            raise InputError(f"ERSA types={self.types!r}: choose {', '.join(TYPES)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["background"] = self.background.to_dict()
        return d


def relationship_types(degree: int, types: str = "all") -> list[tuple[int, float, int]]:
    """(m, a, e) of each relationship type of ``degree``: its segments have mean length 100 / m cM and their
    expected number before truncation is a (r m + c) / 2^e (see the module text)."""
    full = [(degree + 1, 2.0, degree)]
    if types == "ersa":
        return full
    out = full + [(degree, 1.0, degree - 1)]
    if degree >= 2:
        out.append((degree - 1, 1.0, degree - 1))
    return out


def _at_least(segments: Segments, threshold: float) -> Segments:
    """The segments of at least ``threshold`` cM."""
    keep = segments.length_cm >= threshold
    pair = np.repeat(np.arange(segments.n_pairs), segments.count())
    counts = np.bincount(pair[keep], minlength=segments.n_pairs)
    return Segments(np.r_[0, np.cumsum(counts)].astype(np.int64), segments.chrom[keep], segments.start_cm[keep],
                    segments.end_cm[keep])


def _poisson(n: np.ndarray, lam: float) -> np.ndarray:
    from scipy.special import gammaln  # lazy: scipy.special costs every snpbag command ~0.15 s to import

    return n * np.log(lam) - lam - gammaln(n + 1.0)


def _padded(segments: Segments) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's segment lengths sorted ascending, padded with NaN: (pairs, max count), and the counts."""
    n = segments.count()
    width = int(n.max()) if n.size else 0
    out = np.full((segments.n_pairs, width), np.nan)
    col = np.arange(len(segments.length_cm)) - np.repeat(segments.offsets[:-1], n)
    out[np.repeat(np.arange(segments.n_pairs), n), col] = segments.length_cm
    return np.sort(out, axis=1), n


def log_likelihoods(segments: Segments, model: Model) -> np.ndarray:
    """Log-likelihood of each pair's segments (those of at least ``model.threshold`` cM) under each degree.

    Returns
    -------
    float64 (pairs, max_degree + 1): column k − 1 is degree k (the mixture of its relationship types, each
    maximised over the background share), the last column unrelated (background only).
    """
    t, bg = model.threshold, model.background
    kept = _at_least(segments, t)
    s, n = _padded(kept)  # (P, W) ascending, NaN padded
    P, W = s.shape
    valid = ~np.isnan(s)
    excess = np.where(valid, s - t, 0.0)
    lam_p = np.broadcast_to(np.asarray(bg.rate, dtype=np.float64), (P,))[:, None]  # (P, 1)
    per = Background(*(np.broadcast_to(np.asarray(getattr(bg, f.name), dtype=np.float64), (P,)) for f in fields(bg)))
    fp = np.where(valid, per.log_density(excess), 0.0)  # (P, W)
    cum_fp = np.concatenate([np.zeros((P, 1)), np.cumsum(fp, axis=1)], axis=1)  # (P, W+1): shortest j background
    split = np.arange(W + 1)  # j = segments assigned to the background
    ok = split[None, :] <= n[:, None]  # (P, W+1)
    nf = n.astype(np.float64)
    out = np.empty((P, model.max_degree + 1))
    out[:, -1] = _poisson(nf, lam_p[:, 0]) + cum_fp[:, -1]
    from scipy.special import logsumexp  # lazy, as in _poisson

    r, c = model.genome_cm / 100.0, float(model.chromosomes)
    for k in range(1, model.max_degree + 1):
        comps = []
        for m, a, e in relationship_types(k, model.types):
            lam = a * (r * m + c) / 2.0 ** e * np.exp(-m * t / 100.0)
            fa = np.where(valid, -m * excess / 100.0 + np.log(m / 100.0), 0.0)
            tail = fa.sum(axis=1, keepdims=True) - np.concatenate([np.zeros((P, 1)), np.cumsum(fa, axis=1)], axis=1)
            ll = (_poisson(split[None, :].astype(np.float64), lam_p) + cum_fp
                  + _poisson(nf[:, None] - split[None, :], lam) + tail)  # (P, W+1)
            comps.append(np.where(ok, ll, -np.inf).max(axis=1))
        comps = np.stack(comps, axis=1)
        out[:, k - 1] = comps.max(axis=1) if model.types == "best" else logsumexp(comps, axis=1) - np.log(comps.shape[1])
    return out


def call_degrees(ll: np.ndarray, *, min_lod: float = 0.0) -> np.ndarray:
    """The maximum-likelihood degree of each pair (1..), or −1 (unrelated) unless its log-likelihood beats the
    background's by more than ``min_lod`` (ERSA's likelihood-ratio test: χ²₁ at α = 0.05 is 1.92)."""
    best = ll[:, :-1].argmax(axis=1)
    lod = ll[np.arange(len(ll)), best] - ll[:, -1]
    return np.where(lod > min_lod, best + 1, -1)


def pair_features(segments: Segments, model: Model) -> np.ndarray:
    """Per-pair inputs for the trained classifier: each degree's log-likelihood ratio against the background
    (clipped to ±200), then :data:`FEATURES` (segments of at least t, their total cM). float32 (pairs, D + 2)."""
    ll = log_likelihoods(segments, model)
    lod = np.clip(ll[:, :-1] - ll[:, -1:], -200.0, 200.0)
    kept = _at_least(segments, model.threshold)
    return np.concatenate([lod, kept.count()[:, None], kept.total_cm()[:, None]], axis=1).astype(np.float32)
