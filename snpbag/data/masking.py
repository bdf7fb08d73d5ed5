"""Which genotypes the model sees and which it must predict (numpy only).

Pre-training hides a random 85-99 % of a sequence's genotypes (SNPBag paper, "Base model
pre-training"); array fine-tuning hides every site that a genotyping array does not type,
so the model learns exactly the imputation problem it will be asked to solve. A
:class:`Masker` mixes the two strategies with given probabilities, per sequence.

Conventions, shared with :mod:`snpbag.data.tokens` and :class:`snpbag.data.batch.Batch`:

* ``truth``: 0/1/2 ALT-allele dosage, ``MISSING`` where either allele is uncalled.
* ``genotype`` (model input): ``truth`` with masked sites set to ``MASK``; a site whose
  truth is missing always reads ``MISSING`` (masked or not), so the input never claims
  to know more than the data.
* ``target``: the true genotype at masked, called sites; ``IGNORE_INDEX`` everywhere
  else. Missing genotypes are never targets.

All randomness comes from a caller-supplied ``numpy.random.Generator``, so a sequence's
mask is a pure function of its seed.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from snpbag.config import MaskingConfig
from snpbag.io.chrom import chrom_key
from snpbag.data.tokens import IGNORE_INDEX, MASK, MISSING
from snpbag.errors import ConfigError, InputError, SiteMismatchError

log = logging.getLogger(__name__)

STRATEGIES = ("random", "array")
_HEADER_FIRST = {"chrom", "#chrom", "chr", "#chr", "chromosome", "#chromosome", "contig"}


def genotype_tokens(haplotypes: np.ndarray) -> np.ndarray:
    """Diploid genotype tokens from phased alleles.

    Parameters
    ----------
    haplotypes : int array (..., 2) of alleles 0/1, -1 where missing.

    Returns
    -------
    int8 array (...): ALT dosage 0/1/2, ``MISSING`` where either allele is missing.
    """
    h = np.asarray(haplotypes, dtype=np.int8)
    a, b = h[..., 0], h[..., 1]
    out = a + b
    out[(a | b) < 0] = MISSING  # the sign bit survives OR: negative where either allele is missing
    return out


def random_mask(n: int, rng: np.random.Generator, *, min_rate: float = 0.85, max_rate: float = 0.99) -> np.ndarray:
    """Hide a uniformly random subset of ``n`` sites at a rate drawn from [min_rate, max_rate].

    The rate is drawn once per call (one sequence); exactly ``k`` sites are hidden, with
    ``k`` the rounded ``rate * n`` clipped to the integers whose rate ``k / n`` lies in the
    bounds, so the realised rate is within bounds whenever such an integer exists (always
    for ``n >= 1 / (max_rate - min_rate)``).

    Parameters
    ----------
    n : number of sites in the sequence.
    rng : source of randomness.
    min_rate, max_rate : bounds of the masking rate, 0 <= min_rate <= max_rate <= 1.

    Returns
    -------
    bool array (n,): True where the site is hidden.
    """
    if not 0.0 <= min_rate <= max_rate <= 1.0:
        raise ConfigError(f"masking rates [{min_rate}, {max_rate}]: need 0 <= min_rate <= max_rate <= 1")
    rate = rng.uniform(min_rate, max_rate) if max_rate > min_rate else min_rate
    k = int(round(rate * n))
    lo, hi = math.ceil(min_rate * n - 1e-9), math.floor(max_rate * n + 1e-9)
    if lo <= hi:
        k = min(max(k, lo), hi)
    # Draw the (few) visible sites rather than the (many) hidden ones: O(n - k) work.
    masked = np.ones(n, dtype=bool)
    if n - k > 0:
        masked[rng.choice(n, size=n - k, replace=False)] = False
    return masked


def apply_mask(truth: np.ndarray, masked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model input and training target for one sequence.

    Parameters
    ----------
    truth : int array (L,) of genotype tokens (0/1/2/MISSING).
    masked : bool array (L,), True where hidden from the model.

    Returns
    -------
    (genotype, target): int8 input tokens (MASK where hidden, MISSING where uncalled) and
    int16 targets (true genotype where hidden and called, IGNORE_INDEX elsewhere).
    """
    truth = np.asarray(truth)
    missing = truth == MISSING
    genotype = np.where(masked, np.int8(MASK), truth).astype(np.int8)
    genotype[missing] = MISSING
    target = np.where(masked & ~missing, truth, IGNORE_INDEX).astype(np.int16)
    return genotype, target


# --- array site lists ------------------------------------------------------------------


def read_array_sites(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Read an array's site list: tab-separated ``chrom pos ref alt`` (extra columns ignored).

    A first line starting with ``#`` or with a column named chrom/chr/chromosome is a
    header; other ``#`` lines are comments.

    Parameters
    ----------
    path : TSV file.

    Returns
    -------
    (chrom, position, ref, alt): chrom as a list of names, position int64, alleles as
    upper-case str arrays.

    Raises
    ------
    InputError : unreadable file, a line with fewer than 4 columns or a non-integer position.
    """
    path = Path(path)
    chrom: list[str] = []
    pos: list[int] = []
    ref: list[str] = []
    alt: list[str] = []
    try:
        with open(path, newline="") as f:
            for lineno, row in enumerate(csv.reader(f, delimiter="\t"), start=1):
                if not row or not "".join(row).strip():
                    continue
                first = row[0].strip()
                if first.startswith("#") or (lineno == 1 and first.lower() in _HEADER_FIRST):
                    continue
                if len(row) < 4:
                    raise InputError(
                        f"{path}:{lineno}: expected 4 tab-separated columns chrom pos ref alt, got {len(row)}"
                    )
                try:
                    p = int(row[1])
                except ValueError:
                    raise InputError(f"{path}:{lineno}: position {row[1]!r} is not an integer") from None
                chrom.append(first)
                pos.append(p)
                ref.append(row[2].strip().upper())
                alt.append(row[3].strip().upper())
    except OSError as e:
        raise InputError(f"{path}: cannot read array site list ({e.strerror}); check --array-sites") from e
    return chrom, np.asarray(pos, dtype=np.int64), np.asarray(ref, dtype=str), np.asarray(alt, dtype=str)


def array_site_mask(path: str | Path, vocab: Any) -> np.ndarray:
    """Which vocabulary sites a genotyping array types.

    A listed site matches a vocabulary site with the same chromosome (compared with
    :func:`~snpbag.io.chrom.chrom_key`, so ``chr22`` == ``22``), position and allele
    pair; the pair is compared unordered because array manifests often list the alleles
    the other way round. Strand flips are not resolved (an array site listed as T/C does
    not match a vocabulary A/G site). Array sites absent from the vocabulary are counted
    and logged.

    Parameters
    ----------
    path : array site list (see :func:`read_array_sites`).
    vocab : a :class:`snpbag.store.vocab.SiteVocab` (anything with ``chrom_names``,
        ``site_chrom``, ``position``, ``ref``, ``alt``).

    Returns
    -------
    bool array (n_sites,): True for vocabulary sites on the array.

    Raises
    ------
    InputError : unreadable list (see :func:`read_array_sites`).
    SiteMismatchError : no listed site is in the vocabulary (wrong build or file).
    """
    a_chrom, a_pos, a_ref, a_alt = read_array_sites(path)
    n_sites = int(np.asarray(vocab.position).size)
    on_array = np.zeros(n_sites, dtype=bool)
    if not a_chrom:
        raise SiteMismatchError(f"{path}: the array site list is empty; expected chrom pos ref alt lines")
    v_keys = np.asarray([chrom_key(str(c)) for c in vocab.chrom_names], dtype=object)
    v_key = v_keys[np.asarray(vocab.site_chrom)]
    v_pos = np.asarray(vocab.position, dtype=np.int64)
    v_ref = np.char.upper(np.asarray(vocab.ref, dtype=str))
    v_alt = np.char.upper(np.asarray(vocab.alt, dtype=str))
    a_key = np.asarray([chrom_key(c) for c in a_chrom], dtype=object)
    matched = 0
    for key in np.unique(a_key):
        vi = np.flatnonzero(v_key == key)
        ai = np.flatnonzero(a_key == key)
        if vi.size == 0:
            continue
        order = np.argsort(v_pos[vi], kind="stable")
        vi = vi[order]
        vp = v_pos[vi]
        lo = np.searchsorted(vp, a_pos[ai], side="left")
        hi = np.searchsorted(vp, a_pos[ai], side="right")
        for j, (l_, h_) in enumerate(zip(lo.tolist(), hi.tolist())):
            if l_ == h_:
                continue
            r, a = a_ref[ai[j]], a_alt[ai[j]]
            hit = False
            for v in vi[l_:h_]:
                if (v_ref[v] == r and v_alt[v] == a) or (v_ref[v] == a and v_alt[v] == r):
                    on_array[v] = True
                    hit = True
            matched += hit
    if matched == 0:
        raise SiteMismatchError(
            f"{path}: none of {len(a_chrom)} array sites match the vocabulary (chrom/pos/alleles); "
            "check the genome build and chromosome names"
        )
    log.info("%s: %d of %d array sites are in the vocabulary (%d vocabulary sites typed)",
             path, matched, len(a_chrom), int(on_array.sum()))
    return on_array


# --- strategies and their mixture --------------------------------------------------------


class Masker:
    """Applies a :class:`snpbag.config.MaskingConfig` to sequences.

    Parameters
    ----------
    config : the strategies and their weights.
    array_mask : bool (n_sites,) over the whole vocabulary, True where the array types the
        site; required when ``config.array > 0`` (see :func:`array_site_mask`).
    """

    def __init__(self, config: MaskingConfig, *, array_mask: np.ndarray | None = None) -> None:
        if config.array > 0 and array_mask is None:
            raise ConfigError("masking.array > 0 but no array site mask was given; set masking.array_sites")
        self.config = config
        self.array_mask = None if array_mask is None else np.asarray(array_mask, dtype=bool)
        total = config.random + config.array
        self._p_array = config.array / total

    def choose(self, rng: np.random.Generator) -> str:
        """Draw the strategy for one sequence ('random' or 'array')."""
        if self._p_array <= 0.0:
            return "random"
        if self._p_array >= 1.0:
            return "array"
        return "array" if rng.random() < self._p_array else "random"

    def rates(self, sequence: float | None = None) -> tuple[float, float]:
        """Bounds of the random masking rate for the training sequence number ``sequence``
        (counted over all ranks and epochs; None: after any curriculum, as in evaluation)."""
        c = self.config
        if not c.curriculum_sequences or sequence is None:
            return c.min_rate, c.max_rate
        t = min(1.0, max(0.0, sequence / c.curriculum_sequences))
        return c.start_min_rate + t * (c.min_rate - c.start_min_rate), c.start_max_rate + t * (c.max_rate - c.start_max_rate)

    def mask(self, site_index: np.ndarray, rng: np.random.Generator, *, sequence: float | None = None) -> np.ndarray:
        """Bool mask (L,) for a sequence covering vocabulary sites ``site_index``; ``sequence``
        places it in the masking curriculum (:meth:`rates`)."""
        n = len(site_index)
        if self.choose(rng) == "array":
            assert self.array_mask is not None
            return ~self.array_mask[np.asarray(site_index)]
        lo, hi = self.rates(sequence)
        return random_mask(n, rng, min_rate=lo, max_rate=hi)

    def __call__(
        self, truth: np.ndarray, site_index: np.ndarray, rng: np.random.Generator, *, sequence: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(genotype, target) for one sequence; see :func:`apply_mask`."""
        return apply_mask(truth, self.mask(site_index, rng, sequence=sequence))


def unmasked(truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Input and target when nothing is hidden (prediction): the truth and no targets."""
    truth = np.asarray(truth)
    return truth.astype(np.int8, copy=True), np.full(truth.shape, IGNORE_INDEX, dtype=np.int16)
