"""The square kinship matrix of ``snpbag king --matrix``: a Zarr v3 group with sample ids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from snpbag.kinship.estimators import kinship


def fill_matrix(k, pc, estimator: str) -> None:
    """Write the rows of ``pc`` and, by symmetry, its columns of the square matrix ``k``."""
    r0, r1 = pc.rows
    block = kinship(pc.hethet, pc.ibs0, pc.het_row, pc.het_col, estimator=estimator).astype(np.float32)
    block[np.arange(r1)[None, :] >= np.arange(r0, r1)[:, None]] = 0.0  # keep j < i
    sq = block[:, r0:r1]
    sq[...] = sq + sq.T  # the band's upper part mirrors its lower part
    np.fill_diagonal(sq, 0.5)
    k[r0:r1, :r1] = block
    if r0 > 0:
        k[:r0, r0:r1] = block[:, :r0].T


def create_matrix(path: str | Path, sample_ids: Sequence[str], *, attrs: dict):
    """A Zarr v3 group with ``sample_id`` and an empty float32 ``kinship`` (samples x samples_2)."""
    import zarr

    n = len(sample_ids)
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    ids = g.create_array("sample_id", shape=(n,), dtype=str, dimension_names=["samples"])
    ids[:] = np.array(sample_ids, dtype=str)
    side = min(n, 4096)
    k = g.create_array("kinship", shape=(n, n), dtype="float32", chunks=(side, side), fill_value=np.nan,
                       dimension_names=["samples", "samples_2"])
    g.attrs.update({"description": "KING-robust kinship; rows and columns follow sample_id", **attrs})
    return k
