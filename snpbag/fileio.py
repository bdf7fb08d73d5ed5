"""Atomic outputs: a result appears under its final name only when it is complete.

A killed run must never leave a store, VCF or model directory that looks valid, so
every writer works on a temporary sibling path and renames it at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from snpbag.errors import InputError


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(final: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``final``; rename it onto ``final`` on success.

    Works for files and directories. On any exception the temporary path is removed
    and ``final`` is left untouched.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise InputError(f"{final}: output already exists; remove it or choose another path")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if overwrite and final.exists():
            _remove(final)
        os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def atomic_outputs(*finals: str | Path, overwrite: bool = False) -> Iterator[list[Path]]:
    """Like atomic_output for several files that belong together (a VCF and its index)."""
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic_output(f, overwrite=overwrite)) for f in finals]
        yield tmps
