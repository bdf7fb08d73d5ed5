"""What every retrieval panel knows about its genomes: their ids and store rows.

Shared by the genome panel (:mod:`snpbag.retrieval.genomes`) and the haplotype panel
(:mod:`snpbag.retrieval.haplotypes`), so leave-one-out finds a genome's panel row the same way
whichever kind a model reads.
"""

from __future__ import annotations

import numpy as np


class PanelRows:
    """Mixin: ``sample_ids`` (or None) and sorted ``store_rows`` (or None) of the panel genomes."""

    sample_ids: np.ndarray | None
    store_rows: np.ndarray | None

    def rows_of_store(self, store_rows) -> np.ndarray:
        """Panel rows of store rows (−1 where a store row is not in the panel, e.g. validation)."""
        q = np.atleast_1d(np.asarray(store_rows, dtype=np.int64))
        if self.store_rows is None or self.store_rows.size == 0:
            return np.full(q.shape, -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.store_rows, q), self.store_rows.size - 1)
        return np.where(self.store_rows[at] == q, at, -1)

    def row_of(self, sample_id: str) -> int:
        """Panel row of a sample id, −1 if it is not in the panel (or ids were not kept)."""
        if self.sample_ids is None:
            return -1
        hit = np.flatnonzero(self.sample_ids == sample_id)
        return int(hit[0]) if hit.size else -1
