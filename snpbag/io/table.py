"""Whitespace-separated tables a user writes by hand (``--pairs``, ``--populations``): the rows'
fields with their line numbers, comment and header lines skipped, a short row refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from snpbag.errors import InputError


def table_rows(path: str | Path, *, flag: str, headers: tuple[str, ...], fields: int, need: str
               ) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each row of ``path`` given as ``flag``; blank lines, lines starting with
    ``#`` and a header line whose first field is one of ``headers`` are skipped.

    Raises
    ------
    InputError : a row with fewer than ``fields`` fields (``need`` says what a row holds).
    """
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        f = line.split()
        if not f or f[0].startswith("#") or f[0] in headers:
            continue
        if len(f) < fields:
            raise InputError(f"{flag} {path} line {n}: need {need}")
        yield n, f
