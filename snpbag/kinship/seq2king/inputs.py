"""What Seq2KING reads: a square kinship matrix with sample ids, and population labels.

Kinship comes from any table with plink2's ``.kin0`` columns (``#IID1`` or ``IID1``,
``IID2`` and a kinship column; other columns ignored) or from the Zarr group of ``snpbag king
--matrix`` (``sample_id``, ``kinship``). The kinship column is ``KINSHIP`` (KING-robust:
``snpbag king``'s ``PREFIX.kin0``, and the same column of ``snpbag relate``'s ``PREFIX.rel``) or
``EXP_KINSHIP`` (the relatedness classifier's expected kinship, ``PREFIX.rel`` only), so the
relatedness head can feed the analysis. Labels are a tab-separated table read only by the
analysis, never by training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snpbag.errors import InputError, SampleError

#: Kinship columns a table can be read from: KING's, then the relatedness classifier's expected kinship.
KINSHIP_COLUMNS = ("KINSHIP", "EXP_KINSHIP")
#: Column names accepted for the individual in a labels file, in order of preference.
ID_COLUMNS = ("sample", "sample_id", "IID", "#IID", "iid")


@dataclass(frozen=True)
class Kinship:
    """A symmetric kinship matrix (self-kinship 0.5 on the diagonal) and where it came from."""

    ids: np.ndarray  # (N,) str
    matrix: np.ndarray  # (N, N) float64
    source: str  # the path read
    kind: str  # "kin0 table" or "kinship matrix (Zarr)"
    column: str = "KINSHIP"  # the table column read (a matrix holds KING's kinship)

    def index(self, ids) -> np.ndarray:
        """Row numbers of ``ids``; SampleError naming the first id that is absent."""
        pos = {s: i for i, s in enumerate(self.ids.tolist())}
        missing = [s for s in ids if s not in pos]
        if missing:
            raise SampleError(f"{self.source}: {len(missing)} individual(s) of the model are absent "
                              f"(first: {missing[0]!r}); pass the kinship the model was trained on or a superset")
        return np.array([pos[s] for s in ids], dtype=np.int64)


def read_kinship(path: str | Path, *, column: str = "KINSHIP") -> Kinship:
    """Read a ``.kin0``-style table or a ``--matrix`` Zarr group into a full matrix.

    Parameters
    ----------
    path : the table or the Zarr group.
    column : the table's kinship column, one of :data:`KINSHIP_COLUMNS` (``--kinship-column``).

    Raises
    ------
    InputError : no such file; an unknown column, or one the input lacks (EXP_KINSHIP outside a
        ``snpbag relate`` table); pairs missing (a ``--min-kinship`` table); non-numeric or NaN
        values; a matrix row that is all NaN.
    """
    path = Path(path)
    if column not in KINSHIP_COLUMNS:
        raise InputError(f"--kinship-column {column}: choose one of {', '.join(KINSHIP_COLUMNS)}")
    if not path.exists():
        raise InputError(f"--kinship {path}: no such file or directory; run `snpbag king INPUT --out PREFIX` first")
    if path.is_dir():
        if column != "KINSHIP":
            raise InputError(f"--kinship-column {column}: {path} is a kinship matrix, which holds KING's kinship "
                             "only; pass the PREFIX.rel table of `snpbag relate` (all pairs)")
        return _read_matrix(path)
    return _read_table(path, column)


def table_columns(path: str | Path) -> list[str]:
    """The :data:`KINSHIP_COLUMNS` a table's header has ([] for a matrix directory)."""
    path = Path(path)
    if path.is_dir():
        return []
    with open(path) as fh:
        header = {c.lstrip("#") for c in fh.readline().rstrip("\n").split("\t")}
    return [c for c in KINSHIP_COLUMNS if c in header]


def _read_table(path: Path, column: str) -> Kinship:
    with open(path) as fh:
        header = fh.readline().rstrip("\n").split("\t")
        rows = [line.rstrip("\n").split("\t") for line in fh if line.strip()]
    cols = {c.lstrip("#"): i for i, c in enumerate(header)}
    if column not in cols:
        fix = ("pass the PREFIX.rel of `snpbag relate` (all pairs) or --kinship-column KINSHIP"
               if column == "EXP_KINSHIP" else
               "pass the .kin0 of `snpbag king` or a table with #IID1, IID2 and KINSHIP columns")
        raise InputError(f"{path}: no {column} column in the header ({' '.join(header)[:80]}); {fix}")
    if "IID1" not in cols or "IID2" not in cols:
        raise InputError(f"{path}: needs IID1 and IID2 columns (plink2's .kin0 header); found {' '.join(header)[:80]}")
    i1, i2, ik = cols["IID1"], cols["IID2"], cols[column]
    try:
        a = [r[i1] for r in rows]
        b = [r[i2] for r in rows]
        k = np.array([r[ik] for r in rows], dtype=np.float64)
    except (IndexError, ValueError) as e:
        raise InputError(f"{path}: a line has too few columns or a non-numeric {column} ({e}); "
                         "regenerate it with `snpbag king` or `snpbag relate`") from None
    ids: dict[str, int] = {}
    for s2, s1 in zip(b, a):  # plink2's order (row i against rows j < i) recovers the sample order
        ids.setdefault(s2, len(ids))
        ids.setdefault(s1, len(ids))
    n = len(ids)
    if n < 2:
        raise InputError(f"{path}: fewer than two individuals; Seq2KING needs a cohort")
    ia = np.fromiter((ids[s] for s in a), dtype=np.int64, count=len(a))
    ib = np.fromiter((ids[s] for s in b), dtype=np.int64, count=len(b))
    m = np.full((n, n), np.nan)
    m[ia, ib] = k
    m[ib, ia] = k
    np.fill_diagonal(m, 0.5)
    if np.isnan(m).any():
        n_missing = int(np.isnan(m).sum() // 2)
        raise InputError(f"{path}: {n_missing} pair(s) missing or NaN; Seq2KING needs every pair - "
                         "run `snpbag king` without --min-kinship")
    return Kinship(np.array(list(ids), dtype=str), m, str(path), "kin0 table", column)


def _read_matrix(path: Path) -> Kinship:
    import zarr

    try:
        g = zarr.open_group(str(path), mode="r")
        ids = np.array([str(s) for s in g["sample_id"][:]], dtype=str)  # zarr v3 strings are StringDType
        m = np.asarray(g["kinship"][:], dtype=np.float64)
    except (KeyError, FileNotFoundError, ValueError) as e:
        raise InputError(f"{path}: not a kinship matrix of `snpbag king --matrix` ({e}); "
                         "pass PREFIX.king.zarr or a .kin0 table") from None
    if m.shape != (len(ids), len(ids)):
        raise InputError(f"{path}: kinship is {m.shape} for {len(ids)} sample ids; rewrite it with `snpbag king --matrix`")
    bad = np.flatnonzero(np.isnan(m).any(axis=1))
    if bad.size:
        raise InputError(f"{path}: {bad.size} row(s) contain NaN (first: {ids[bad[0]]!r}); the matrix is incomplete - "
                         "rerun `snpbag king --matrix` to the end")
    return Kinship(ids, (m + m.T) / 2, str(path), "kinship matrix (Zarr)")


@dataclass(frozen=True)
class TokenVectors:
    """One vector per individual, keyed by sample id: the genome embeddings of ``snpbag embed``
    as token input (``features=embedding``). Read by ``snpbag.inference.seq2king``, which owns
    the embeddings file; this layer only matches them to the kinship individuals."""

    ids: list[str]
    matrix: np.ndarray  # (n, D) float32
    source: str  # the embeddings path
    identity: dict  # the embedding model's identity (name, weights and vocabulary hashes)

    def rows(self, ids) -> np.ndarray:
        """Row of each of ``ids``; SampleError naming the embeddings file and the first id it lacks."""
        pos = {s: i for i, s in enumerate(self.ids)}
        ids = list(ids)
        missing = [s for s in ids if s not in pos]
        if missing:
            raise SampleError(f"--embeddings {self.source}: {len(missing)} of {len(ids)} individuals of the kinship input "
                              f"have no embedding (first: {missing[0]!r}); run `snpbag embed --pool mean` on a VCF "
                              "holding every individual of --kinship")
        return np.array([pos[s] for s in ids], dtype=np.int64)


@dataclass(frozen=True)
class Labels:
    """Continent and population of each individual, in the order asked for."""

    continent: np.ndarray  # (N,) str
    population: np.ndarray  # (N,) str

    def level(self, name: str) -> np.ndarray:
        return self.continent if name == "continent" else self.population


def read_labels(path: str | Path, ids) -> Labels:
    """Labels of ``ids`` from a TSV with a header: an id column (``sample``, ``sample_id`` or
    ``IID``), ``population`` and ``continent`` (or ``superpopulation``; when absent the
    population stands in for it).

    Raises
    ------
    InputError : no such file, or no id/population column.
    SampleError : individuals without a label; a level with fewer than two groups.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--labels {path}: no such file; write a TSV with columns sample, population, continent")
    with open(path) as fh:
        header = fh.readline().rstrip("\n").split("\t")
        rows = [line.rstrip("\n").split("\t") for line in fh if line.strip()]
    col = {c: i for i, c in enumerate(header)}
    id_col = next((c for c in ID_COLUMNS if c in col), None)
    if id_col is None or "population" not in col:
        raise InputError(f"{path}: needs a header with an id column ({', '.join(ID_COLUMNS[:3])}) and population; "
                         f"found {' '.join(header)[:80]}")
    cont_col = "continent" if "continent" in col else "superpopulation" if "superpopulation" in col else "population"
    try:
        table = {r[col[id_col]]: (r[col[cont_col]], r[col["population"]]) for r in rows}
    except IndexError:
        raise InputError(f"{path}: a line has fewer columns than the header; fix the TSV") from None
    ids = list(ids)
    missing = [s for s in ids if s not in table]
    if missing:
        raise SampleError(f"{path}: {len(missing)} of {len(ids)} individuals have no label (first: {missing[0]!r}); "
                          "add a line for each individual of the kinship input")
    cont = np.array([table[s][0] for s in ids], dtype=str)
    pop = np.array([table[s][1] for s in ids], dtype=str)
    for name, values in (("continent", cont), ("population", pop)):
        if len(np.unique(values)) < 2:
            raise SampleError(f"{path}: one {name} only ({str(values[0])!r}); connectivity compares groups - "
                              "label at least two")
    return Labels(cont, pop)
