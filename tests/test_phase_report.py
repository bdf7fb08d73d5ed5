"""``snpbag phase --report DIR``: the page counts what was phased and passed through, and
renders in headless Chromium (figures drawn, no JavaScript errors)."""

from __future__ import annotations

import gzip
import re

import pytest
from click.testing import CliRunner

import chromium
from chromium import requires_chromium
from snpbag.cli import main
from snpbag.eval.phase import write_unphased


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("phase_report")
    cli("simulate", d / "sim", "--samples-per-pop", 10, "--length", 100_000, "--split-targets", 5, "--seed", 3)
    write_unphased(d / "sim" / "targets.vcf.gz", d / "unphased.vcf.gz")
    lines = gzip.open(d / "unphased.vcf.gz", "rt").read().splitlines()
    first = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    c = lines[first].split("\t")
    indel = "\t".join([c[0], str(int(c[1]) + 1), ".", c[3], c[3] + "T", *c[5:]])  # passes through unphased
    (d / "input.vcf").write_text("\n".join([*lines[:first + 1], indel, *lines[first + 1:]]) + "\n")
    result = cli("phase", "--input", d / "input.vcf", "--output", d / "phased.vcf.gz", "--ref",
                 d / "sim" / "reference.vcf.gz", "--threads", 1, "--report", d / "rep")
    return d, len(lines) - first, result


def test_report_page_counts_records_and_speed(report):
    d, n_snps, result = report
    page = (d / "rep" / "index.html").read_text()
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 3  # self-contained
    for name in ("records", "pp", "hets_per_sample"):
        assert (d / "rep" / f"{name}.png").stat().st_size > 5_000
    row = re.search(r"<tr><td>([\d,]+)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td>", page)
    assert row, page[-2000:]
    phased, multi, indel, other = (int(row[i].replace(",", "")) for i in (1, 2, 3, 4))
    assert (phased, multi, indel, other) == (n_snps, 0, 1, 0)
    assert "samples/s" in page and "MiB" in page and "5 (0 already phased, kept)" in page
    assert "PP ≥ 0.9" in page


@requires_chromium
def test_phase_report_renders_in_headless_chromium(report, tmp_path):
    d, _, _ = report
    chromium.check_report_page(d / "rep" / "index.html", tmp_path, images=3)
