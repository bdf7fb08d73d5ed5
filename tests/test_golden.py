"""Golden outputs: the store, the .kin0 and the imputed VCF of one fixed run, pinned by digest.

Refactors (moving modules, renaming internals) must not change a byte a user sees. This test
drives the public CLI only — simulate, convert, king, train, export, impute — on a small
msprime cohort with fixed seeds and compares digests with tests/assets/golden.json:

* the store: every array's dtype, shape and bytes plus the attributes, less the run's
  provenance (timestamp, git revision, versions) and the input path;
* the .kin0: its bytes;
* the imputed VCF: its decompressed text, less the header lines that name the date, the
  command line and the software versions.

A deliberate output change regenerates the file with ``SNPBAG_GOLDEN_UPDATE=1 pytest
tests/test_golden.py`` and says so in its commit.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner

from snpbag.cli import main

from tiny_data import TINY_TRAIN as TRAIN

torch.set_num_threads(1)

GOLDEN = Path(__file__).parent / "assets" / "golden.json"


# provenance that differs between two identical runs
_VOLATILE_ATTRS = ("snpbag_provenance",)
_VOLATILE_HEADER = ("##filedate=", "##source=", "##snpbag_command=", "##snpbag_model=")


def _cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)


def _store_digest(path: Path) -> str:
    g = zarr.open_group(str(path), mode="r")
    h = hashlib.sha256()
    attrs = {k: v for k, v in dict(g.attrs).items() if k not in _VOLATILE_ATTRS}
    for key in ("input", "seconds"):
        attrs.get("snpbag_conversion", {}).pop(key, None)
    h.update(json.dumps(attrs, sort_keys=True).encode())
    for name in sorted(g.array_keys()):
        a = np.asarray(g[name][...])
        kind = "str" if a.dtype.kind in "OUT" else a.dtype.str
        h.update(f"{name}|{kind}|{a.shape}|".encode())
        h.update("\x00".join(map(str, a.ravel().tolist())).encode() if a.dtype.kind in "OUT" else a.tobytes())
    return h.hexdigest()


def _vcf_digest(path: Path) -> str:
    with gzip.open(path, "rt") as f:
        lines = [ln for ln in f.read().splitlines() if not ln.startswith(_VOLATILE_HEADER)]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("golden")
    sim = d / "sim"
    _cli("simulate", sim, "--samples-per-pop", 12, "--length", 120_000, "--split-targets", 5,
         "--array-fraction", 0.3, "--seed", 7)
    store = d / "ref.zarr"
    _cli("convert", sim / "reference.vcf.gz", store, "--tile-len", 128, "--threads", 1)
    _cli("king", store, "--out", d / "ref")
    _cli("train", f"data.store={store}", f"paths.run_dir={d / 'run'}", *TRAIN)
    _cli("export", d / "run", d / "model")
    _cli("impute", "--model", d / "model", "--input", sim / "targets_array.vcf.gz",
         "--output", d / "imputed.vcf.gz", "--batch-size", 4)
    return {
        "store": _store_digest(store),
        "kin0": hashlib.sha256((d / "ref.kin0").read_bytes()).hexdigest(),
        "imputed_vcf": _vcf_digest(d / "imputed.vcf.gz"),
    }


def test_outputs_are_byte_identical_to_the_pinned_run(outputs):
    if os.environ.get("SNPBAG_GOLDEN_UPDATE"):
        GOLDEN.write_text(json.dumps(outputs, indent=1, sort_keys=True) + "\n")
    want = json.loads(GOLDEN.read_text())
    assert outputs == want
