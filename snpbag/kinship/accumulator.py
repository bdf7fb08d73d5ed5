"""The one interface of the KING count kernels: an accumulator per pass, fed chunk by chunk.

:func:`~snpbag.kinship.counts.pair_counts` splits each variant chunk three ways: complete
variants with few minor-allele carriers become carrier-pair lists
(:mod:`~snpbag.kinship.carriers`), the other complete variants and the variants with a
missing call go to a kernel. A kernel is a strategy behind :class:`Accumulator` —
bit-plane popcounts (:class:`~snpbag.kinship.popcount.PopcountAccumulator`) or int8
GEMMs (:class:`~snpbag.kinship.gemm.GemmAccumulator`) — and the driver calls, in order:

1. :meth:`~Accumulator.prepare` on each decoded chunk (in reader threads): the kernel's
   operands of its complete and missing-call variants;
2. :meth:`~Accumulator.accumulate` on each prepared chunk, in genome order: carrier pairs
   and per-sample terms here, kernel operands buffered to ``chunk`` variants and counted;
3. :meth:`~Accumulator.flush` once the input ends, then :meth:`~Accumulator.collect`
   (accumulators in host memory, homozygous carrier pairs added);
4. :meth:`~Accumulator.finish` on row bands (in threads), then :meth:`~Accumulator.counts`.

Both strategies end in the same algebra (see counts' module docstring): per pair HETHET
and ``S·S'`` accumulated, per sample the heterozygous calls ``het`` and minor-allele
dosages ``x`` of the variants counted without a missing call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from snpbag.kinship.carriers import CarrierPairs

#: Carrier pairs buffered before they are counted (np.bincount over the pass's cells).
PAIR_BUFFER = 1 << 23


@dataclass
class Chunk:
    """One variant chunk, split by how its pairs are counted."""

    ibs0_sum: float
    sparse: CarrierPairs | None = None
    dense: Any = None  # variants every sample of the pass called, as the kernel's operand
    n_dense: int = 0
    het: np.ndarray | None = None  # heterozygous calls per sample among them, where prepare counted them
    missing: Any = None  # variants with a missing call, as the kernel's operand
    n_missing: int = 0


class Accumulator(ABC):
    """Exact KING counts of the pairs (i, j), ``rows[0] <= i < rows[1]``, ``j < i``, one chunk at a time.

    Parameters
    ----------
    rows : the pass's ``(r0, r1)``; counts are (r1 − r0, r1) arrays (entry [i − r0, j]).
    chunk : variants buffered before the kernel counts them.
    """

    #: prepare copies what it keeps: a reader may reuse its decode buffers.
    copies: bool = False

    def __init__(self, *, rows: tuple[int, int], chunk: int):
        self.r0, self.ncol = rows[0], rows[1]
        self.nrow = rows[1] - rows[0]
        self.chunk = chunk
        self.het = np.zeros(self.ncol, dtype=np.int64)  # per sample, over complete variants
        self.n_complete = 0
        # S·S' = X·X' − x_i − x_j + n over the variants whose X·X' went into ss
        self.x = np.zeros(self.ncol, dtype=np.int64)
        self.n_x = 0
        self._hom: list[tuple[np.ndarray, np.ndarray]] = []  # pairs with a homozygous carrier (X·X' only)
        self._dense: list = []
        self._missing: list = []
        self._n_dense = self._n_missing = 0

    @property
    @abstractmethod
    def cells(self) -> int:
        """Kernel cost of one variant (pairs, or products of the GEMM tiles): sets the carrier-pair limit."""

    @abstractmethod
    def prepare(self, g: np.ndarray, c: Chunk, *, dense: np.ndarray, complete: np.ndarray) -> None:
        """Fill ``c``'s kernel operands from the dosages ``g`` (v, n_all): rows ``dense`` (complete, no
        carrier pairs) and rows ``~complete``, the first ``ncol`` samples. Runs in reader threads."""

    def accumulate(self, c: Chunk) -> None:
        """Add one prepared chunk: carrier pairs now, kernel operands once ``chunk`` variants are buffered."""
        if c.sparse is not None:
            sp = c.sparse
            self.het += sp.het
            self.n_complete += sp.n
            self.x += sp.x
            self.n_x += sp.n
            if sp.flat.size:
                self._add_pairs(sp.flat)
            if sp.hom_flat.size:
                self._hom.append((sp.hom_flat, sp.hom_w))
        if c.dense is not None:
            self._dense.append(c.dense)
            self._n_dense += c.n_dense
            if self._n_dense >= self.chunk:
                self._flush_dense()
        if c.missing is not None:
            self._missing.append(c.missing)
            self._n_missing += c.n_missing
            if self._n_missing >= self.chunk:
                self._flush_missing()

    def flush(self) -> None:
        """Count what is buffered: the input has ended."""
        if self._dense:
            self._flush_dense()
        if self._missing:
            self._flush_missing()

    @abstractmethod
    def collect(self) -> None:
        """Bring the accumulators to host memory and add the homozygous carrier pairs (:meth:`_add_hom`)."""

    @abstractmethod
    def finish(self, b0: int, b1: int) -> None:
        """Rows ``[b0, b1)`` of the pass: every count from the accumulators (row bands may run in threads)."""

    @abstractmethod
    def counts(self) -> tuple[np.ndarray, ...]:
        """(HETHET, IBS0, het row, het column, NSNP), each (nrow, ncol) int32, once :meth:`finish` covered every row."""

    def close(self) -> None:
        """Undo what the accumulator changed outside itself (also after an error)."""

    # -- for the strategies ----------------------------------------------------------------
    @abstractmethod
    def _add_pairs(self, flat: np.ndarray) -> None:
        """+1 to HETHET and ``S·S'`` at the flat cells of heterozygous carrier pairs."""

    @abstractmethod
    def _count_dense(self, parts: list) -> None:
        """Count the buffered complete variants (the operands of several chunks)."""

    @abstractmethod
    def _count_missing(self, parts: list) -> None:
        """Count the buffered variants with missing calls."""

    def _flush_dense(self) -> None:
        parts, self._dense, self._n_dense = self._dense, [], 0
        self._count_dense(parts)

    def _flush_missing(self) -> None:
        parts, self._missing, self._n_missing = self._missing, [], 0
        self._count_missing(parts)

    def _add_hom(self, ss: np.ndarray) -> None:
        """Add the pairs with a homozygous carrier to ``ss`` (few: each distinct pair once)."""
        if not self._hom:
            return
        f, w = (np.concatenate(x) for x in zip(*self._hom))
        self._hom.clear()
        u, inv = np.unique(f, return_inverse=True)
        ss.reshape(-1)[u] += np.bincount(inv, weights=w, minlength=u.size).astype(np.int32)
