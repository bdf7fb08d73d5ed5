"""tools/bench/make_tables.py renders the tables of docs/benchmarks.md from the JSON that
tools/bench/_results.py writes. No benchmark runs here: a fixture stands in for one."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from snpbag.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "assets" / "bench" / "bench_example.json"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "tools" / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


make_tables = _module("make_tables")
results = _module("_results")

EXPECTED = """\
write: `tools/bench/bench_vcfout.py --sites 10000 --samples 1000` — commit `f0a8fb1`, 2 cores, AMD EPYC, \
24 GiB, no GPU, load 1.25, 2026-11-21T20:00:00+00:00

| step | seconds | genotypes | identical |
|---|---|---|---|
| buffer | 5.012 | 10,000,000 | yes |
| write \\| index | 7.6 | 10,000,000 | – |

- vcf_mib: 4.3
"""


def test_renders_the_fixture():
    assert make_tables.render(make_tables.load(FIXTURE)) == EXPECTED


def test_chosen_table_and_columns(capsys):
    assert make_tables.main([str(FIXTURE), "--table", "write", "--columns", "step,seconds", "--digits", "2"]) == 0
    out = capsys.readouterr().out
    assert "| step | seconds |\n|---|---|\n| buffer | 5 |\n| write \\| index | 7.6 |\n" in out
    assert "vcf_mib" not in out  # info only with all tables


def test_unknown_table_is_refused(capsys):
    assert make_tables.main([str(FIXTURE), "--table", "speed"]) == 2
    assert "no table speed in these results (tables: write); fix --table" in capsys.readouterr().err


def test_not_a_results_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": []}))
    with pytest.raises(InputError, match=r"bad.json: not a tools/bench results file \(missing command, argv"):
        make_tables.load(bad)
    bad.write_text("{")
    with pytest.raises(InputError, match="bad.json: cannot read a results file"):
        make_tables.load(bad)


def test_writer_output_renders(tmp_path):
    path = results.write(tmp_path / "r.json", command="bench_example", argv=["--x", "1"],
                         results={"t": [{"a": 1, "b": float("nan")}]}, info={"ok": True})
    record = json.loads(path.read_text())
    assert list(record)[:6] == list(results.KEYS) and record["argv"] == ["--x", "1"]
    assert record["results"]["t"] == [{"a": 1, "b": None}]  # NaN is not JSON
    assert record["machine"]["cores"] >= 1 and "load_1min" in record["machine"]
    text = make_tables.render(make_tables.load(path))
    assert "`tools/bench/bench_example.py --x 1`" in text and "| 1 | – |" in text and "- ok: yes" in text


def test_default_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = results.write(None, command="bench_example", argv=[], results={"t": []})
    assert path.parent == Path("bench-results") and path.name.startswith("bench_example-")
    assert path.is_file()


def test_combined_runs_share_one_table_grouped(tmp_path, capsys):
    peers = results.write(tmp_path / "p.json", command="phase_vs_peers", argv=["--tools", "beagle"],
                          results={"phasing": [{"setting": "c", "tool": "Beagle", "SER %": 0.07},
                                               {"setting": "a", "tool": "Beagle", "SER %": 0.36}]})
    ours = results.write(tmp_path / "s.json", command="phase_vs_peers", argv=["--tools", "copying"],
                         results={"phasing": [{"setting": "a", "tool": "snpbag", "SER %": 0.9, "status": "ok"},
                                              {"setting": "c", "tool": "snpbag", "SER %": 0.6, "status": "ok"}]})
    assert make_tables.main([str(peers), str(ours), "--combine", "--group-by", "setting"]) == 0
    out = capsys.readouterr().out
    assert "- run 1: `tools/bench/phase_vs_peers.py --tools beagle`" in out
    assert "- run 2: `tools/bench/phase_vs_peers.py --tools copying`" in out
    assert ("| run | setting | tool | SER % | status |\n|---|---|---|---|---|\n| 1 | c | Beagle | 0.07 | – |\n"
            "| 2 | c | snpbag | 0.6 | ok |\n| 1 | a | Beagle | 0.36 | – |\n| 2 | a | snpbag | 0.9 | ok |\n") in out
    rerun = results.write(tmp_path / "r.json", command="phase_vs_peers", argv=["--tools", "beagle", "--settings", "a"],
                          results={"phasing": [{"setting": "a", "tool": "Beagle", "SER %": 0.37}]})
    assert make_tables.main([str(peers), str(ours), str(rerun), "--combine", "--group-by", "setting",
                             "--latest", "tool", "--columns", "run,setting,tool,SER %"]) == 0
    out = capsys.readouterr().out
    assert "| 1 | c | Beagle | 0.07 |\n| 2 | c | snpbag | 0.6 |\n| 2 | a | snpbag | 0.9 |\n| 3 | a | Beagle | 0.37 |\n" in out
    assert make_tables.main([str(rerun), "--combine", "--latest", "tool"]) == 0  # no --group-by: per tool
    assert "- run 1:" in capsys.readouterr().out
    assert make_tables.main([str(peers), "--combine", "--table", "speed"]) == 2
    assert "no table speed in these results; fix --table" in capsys.readouterr().err
