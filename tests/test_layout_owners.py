"""One owner per on-disk layout: the model directory's file names live in snpbag.modeldir, the
run directory's in snpbag.train.rundir, and no other module of the package spells them; the
model directory's format version is checked on read; checkpoint names are written and parsed
by the same module."""

from __future__ import annotations

import ast
import json
import os
import re
import time
from pathlib import Path

import pytest
import torch

from snpbag import modeldir
from snpbag.errors import CheckpointError
from snpbag.train import rundir

PACKAGE = Path(modeldir.__file__).parent
OWNERS = {Path(modeldir.__file__): modeldir.FILES, Path(rundir.__file__): rundir.NAMES}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _used_as_value(tree: ast.AST) -> set[int]:
    """Constants that are a path operand (``d / "x"``), a call argument or an assigned value:
    where a plain word like ``vocab`` is a file name rather than, say, a dict key."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            found |= {id(node.left), id(node.right)}
        elif isinstance(node, ast.Call):
            found |= {id(a) for a in node.args} | {id(k.value) for k in node.keywords}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            found.add(id(node.value))
    return found


def layout_names_in(source: str, names) -> list[tuple[int, str]]:
    """(line, name) of every layout name spelled in ``source`` outside docstrings: names with
    a dot or an underscore (file names, prefixes) anywhere in a string, plain words (``vocab``,
    ``csv``) where a string equal to them is used as a value."""
    tree = ast.parse(source)
    skip, values = _docstrings(tree), _used_as_value(tree)
    hits = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in skip:
            continue
        for name in names:
            if (node.value == name and id(node) in values) if name.isalpha() else name in node.value:
                hits.append((node.lineno, name))
    return hits


def test_layout_names_appear_only_in_their_owner():
    everything = {n for names in OWNERS.values() for n in names}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        allowed = set(OWNERS.get(path, ()))
        for line, name in layout_names_in(path.read_text(), everything - allowed):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name!r}")
    assert not found, "layout names outside snpbag.modeldir / snpbag.train.rundir:\n" + "\n".join(found)


def test_the_scan_finds_what_it_looks_for():
    src = '''"""Docstrings may say model.json."""
CACHE = {}
PATH = "model.json"
def f(run_dir, cache):
    """and last.ckpt"""
    cache["vocab"] = 1  # a dict key, not a file
    log = CSVLogger(run_dir, version="csv")
    return run_dir / "vocab", f"{run_dir}/checkpoints/last.ckpt", "hpc_ckpt_1.ckpt"
'''
    hits = layout_names_in(src, [*modeldir.FILES, *rundir.NAMES])
    assert sorted(hits) == [(3, "model.json"), (7, "csv"), (8, ".ckpt"), (8, ".ckpt"), (8, "hpc_ckpt_"),
                            (8, "last.ckpt"), (8, "vocab")]


def test_panel_files_cover_the_retrieval_kinds():
    from snpbag.retrieval.kinds import KINDS

    assert set(modeldir.PANEL_FILES) == set(KINDS)
    with pytest.raises(Exception, match=r"model.retrieval='nope'; choose one of \['genomes', 'haplotypes'\]"):
        modeldir.panel_file("nope")


def test_model_package_opens_no_file():
    """snpbag.model builds modules; model directories are read and written by snpbag.modeldir."""
    io_names = {"open", "read_text", "write_text", "read_bytes", "write_bytes", "load_file", "save_file", "load",
                "save"}
    found = []
    for path in sorted((PACKAGE / "model").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                if name in io_names:
                    found.append(f"{path.name}:{node.lineno}: {name}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                found += [f"{path.name}:{node.lineno}: import {m}" for m in mods
                          if m.split(".")[0] in ("json", "pathlib", "pickle", "safetensors") or m == "snpbag.fileio"]
    assert not found, found


# --- the format version --------------------------------------------------------------------------


@pytest.fixture
def model_dir(tmp_path) -> Path:
    import numpy as np

    from snpbag.config import preset
    from snpbag.model import build_model
    from snpbag.store.vocab import SiteVocab

    n = 8
    vocab = SiteVocab(chrom_names=("22",), site_chrom=np.zeros(n, np.int16), position=np.arange(1, n + 1) * 100,
                      ref=np.array(["A"] * n, dtype=object), alt=np.array(["G"] * n, dtype=object),
                      af=np.full(n, 0.3, np.float32), tile_chrom=np.zeros(1, np.int16),
                      tile_start=np.zeros(1, np.int64), tile_stop=np.full(1, n, np.int64), tile_len=n,
                      min_maf=0.01)
    cfg = preset("tiny", n_sites=n, n_layers=1, n_heads=2, d_model=16)
    path = tmp_path / "m"
    modeldir.write(path, model=build_model(cfg, site_af=vocab.af), vocab=vocab, training={}, provenance={})
    return path


def _set_version(path: Path, version) -> None:
    f = path / modeldir.CONFIG_FILE
    meta = json.loads(f.read_text())
    meta["version"] = version
    f.write_text(json.dumps(meta))


def test_a_model_directory_of_this_version_reads_and_describes(model_dir):
    from snpbag.api import info, load_model

    assert json.loads((model_dir / modeldir.CONFIG_FILE).read_text())["version"] == modeldir.FORMAT_VERSION == 2
    loaded = load_model(model_dir)
    assert loaded.vocab.n_sites == loaded.model.config.n_sites == 8 and loaded.retrieval_panel is None
    assert "1 layers x 2 heads" in info(model_dir)


@pytest.mark.parametrize("version, why", [
    (modeldir.FORMAT_VERSION + 1, r"format version 3, but this snpbag reads version 2; upgrade snpbag, or re-export"),
    (1, r"format version 1 predates the site allele-frequency prior \(version 2\); retrain with this snpbag"),
])
def test_another_format_version_is_one_line_naming_the_directory_and_the_fix(model_dir, version, why):
    from snpbag.api import info, load_model

    _set_version(model_dir, version)
    for read in (load_model, info, modeldir.load_model, modeldir.read_meta):
        with pytest.raises(CheckpointError, match=rf"^{re.escape(str(model_dir))}: model directory {why}") as e:
            read(model_dir)
        assert "\n" not in str(e.value)


def test_a_foreign_directory_is_refused(model_dir, tmp_path):
    f = model_dir / modeldir.CONFIG_FILE
    f.write_text(json.dumps({**json.loads(f.read_text()), "format": "other"}))
    with pytest.raises(CheckpointError, match=r"model.json: format 'other' is not 'snpbag-model'; create the model "
                                              r"directory with `snpbag export`"):
        modeldir.read(model_dir)
    not_one = r"not a model directory \(no model.json\); create one with `snpbag export`"
    with pytest.raises(CheckpointError, match=not_one):
        modeldir.read(tmp_path)
    with pytest.raises(CheckpointError, match=r"no such model directory; create one with `snpbag export RUN_DIR"):
        modeldir.describe(tmp_path / "nope")


# --- the run directory ---------------------------------------------------------------------------


def test_best_checkpoint_names_parse_back():
    from snpbag.train.callbacks import best_checkpoints

    ck = best_checkpoints("unused", monitor="val/loss", save_top_k=1)
    for step, loss in ((200, 1.23456), (7, float("nan")), (123456, 3e-7)):
        name = Path(ck.format_checkpoint_name({"step": torch.tensor(step), "val/loss": torch.tensor(loss)})).name
        got = rundir.parse_best(name)
        assert got is not None and got[0] == step and got[1] == pytest.approx(round(loss, 4), nan_ok=True), name
    assert rundir.parse_best("step=000200-val_loss=1.2345.ckpt") == (200, 1.2345)
    for other in (rundir.LAST_CKPT, "hpc_ckpt_3.ckpt", "step=1-val_loss=0.5.pt"):
        assert rundir.parse_best(other) is None


def test_export_and_resume_pick_checkpoints_by_the_layout(tmp_path):
    ckdir = rundir.checkpoints_dir(tmp_path)
    ckdir.mkdir()
    with pytest.raises(CheckpointError, match=r"no checkpoints \(\*.ckpt\) to export"):
        rundir.select_checkpoint(tmp_path)
    assert rundir.resume_checkpoint(tmp_path) is None
    last = ckdir / rundir.LAST_CKPT
    last.write_bytes(b"")
    assert rundir.select_checkpoint(tmp_path) == last == rundir.resume_checkpoint(tmp_path)
    for name in ("step=000100-val_loss=0.9000.ckpt", "step=000200-val_loss=0.8000.ckpt",
                 "step=000300-val_loss=0.8000.ckpt"):
        (ckdir / name).write_bytes(b"")
    # lowest loss, and of equal losses the later step
    assert rundir.select_checkpoint(tmp_path).name == "step=000300-val_loss=0.8000.ckpt"
    assert rundir.select_checkpoint(ckdir).name == "step=000300-val_loss=0.8000.ckpt"
    hpc = tmp_path / f"{rundir.HPC_PREFIX}2.ckpt"
    hpc.write_bytes(b"")
    past = time.time() - 60
    os.utime(last, (past, past))
    assert rundir.resume_checkpoint(tmp_path) == hpc  # the newest of last.ckpt and the pre-emption ones
    assert rundir.run_dirs_of(hpc, None) == [tmp_path.resolve()]
    assert rundir.run_dirs_of(last, "/elsewhere") == [Path("/elsewhere"), tmp_path.resolve()]
