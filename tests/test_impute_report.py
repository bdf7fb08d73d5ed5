"""``snpbag impute --report DIR``: the page, its figures and the ER2 column, rendered in
headless Chromium (renders, no JavaScript errors)."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import chromium
from chromium import requires_chromium
from snpbag.cli import main
from snpbag.inference.report import read_info
from tiny_data import TINY_TRAIN as TRAIN


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _edit_input(src: Path, dst: Path) -> dict[str, int]:
    """Swap REF/ALT (recoding the calls) at every 4th non-ambiguous typed site and move
    every 9th to a wrong allele pair (excluded: allele mismatch). Returns the counts."""
    flip = {"0": "1", "1": "0", ".": "."}
    out, n = [], {"swapped": 0, "mismatch": 0}
    with gzip.open(src, "rt") as f:
        for k, line in enumerate(f):
            c = line.rstrip("\n").split("\t")
            if line.startswith("#") or {c[3], c[4]} in ({"A", "T"}, {"C", "G"}):
                out.append(line.rstrip("\n"))
                continue
            if k % 9 == 0:
                other = next(b for b in "ACGT" if b not in (c[3], c[4]) and {c[3], b} not in ({"A", "T"}, {"C", "G"}))
                c[4] = other
                n["mismatch"] += 1
            elif k % 4 == 0:
                c = [*c[:3], c[4], c[3], *c[5:9], *[flip[g[0]] + g[1] + flip[g[2]] for g in c[9:]]]
                n["swapped"] += 1
            out.append("\t".join(c))
    dst.write_text("\n".join(out) + "\n")
    return n


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    cli("simulate", d / "sim", "--samples-per-pop", 14, "--length", 150_000, "--split-targets", 6,
        "--array-fraction", 0.3, "--seed", 2)
    cli("convert", d / "sim" / "reference.vcf.gz", d / "ref.zarr", "--tile-len", 128, "--threads", 1)
    cli("train", f"data.store={d / 'ref.zarr'}", f"paths.run_dir={d / 'run'}", *TRAIN, "model.retrieval_k=6",
        "model.retrieval_span=16", "model.retrieval=haplotypes")
    cli("export", d / "run", d / "model")
    counts = _edit_input(d / "sim" / "targets_array.vcf.gz", d / "input.vcf")
    out = d / "imputed.vcf.gz"
    result = cli("impute", "--model", d / "model", "--input", d / "input.vcf", "--output", out, "--report", d / "rep")
    return d, counts, result


def test_report_page_has_the_figures_and_facts(report):
    d, counts, result = report
    page = (d / "rep" / "index.html").read_text()
    assert counts["swapped"] > 3 and counts["mismatch"] > 3
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 4  # self-contained: no file links
    for name in ("allele_frequencies", "exclusions", "er2_by_maf", "r2_by_maf"):
        assert (d / "rep" / f"{name}.png").stat().st_size > 5_000
    row = re.search(r"<tr><td>([\d,]+)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td>", page)
    assert row and (int(row[2]), int(row[3]), int(row[4])) == (counts["swapped"], 0, counts["mismatch"])
    assert "samples/s" in page and "MiB" in page and "concordance 0." in page
    assert f"{counts['mismatch']} allele-mismatched" in page


def test_info_file_has_er2_at_typed_sites_only(report):
    d, _, _ = report
    info = read_info(d / "imputed.info.tsv")
    typed = info["type"] == "TYPED"
    assert typed.any() and (~typed).any()
    assert np.isnan(info["er2"][~typed]).all()
    er2 = info["er2"][typed]
    assert np.isfinite(er2).mean() > 0.5 and ((er2[np.isfinite(er2)] >= 0) & (er2[np.isfinite(er2)] <= 1)).all()


@requires_chromium
def test_report_renders_in_headless_chromium(report, tmp_path):
    d, _, _ = report
    chromium.check_report_page(d / "rep" / "index.html", tmp_path, images=4)
    assert chromium.screenshot(d / "rep" / "index.html", tmp_path).stat().st_size > 10_000
