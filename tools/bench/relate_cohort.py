"""All pairs of a simulated cohort of ~3,000 genomes: ``snpbag king`` alone against ``snpbag relate --min-kinship X``.

Steps: ``snpbag simulate --pedigree --max-degree D --array-fraction F`` twice at the same
length — training families (``--seed``) and the cohort (``--families`` families, ``--seed + 1``:
other founders; 47 members per family at D = 12, so 64 families are 3,008 genomes and every
pair across families is unrelated) — and ``snpbag relate train`` on the training families at
the chosen density. Then, each under ``/usr/bin/time -v`` with ``--threads``: ``snpbag king``
on the cohort (every pair written to a .kin0) and ``snpbag relate --min-kinship X`` for each X
of ``--cuts`` (KING on every pair, the classifier only on the pairs at or above X). Reported:
wall, CPU (user + sys) and peak RSS of each, the pairs the prefilter passes to the classifier;
from the all-pairs .kin0 and the simulator's truth, the prefilter's recall per true degree at
each X of ``--recall-cuts`` and why each missed relative is missed
(:func:`snpbag.eval.relate.prefilter_misses`: it shares less than X, or KING's estimate fell
below X); and the degree calls of each cohort run (pairs under the cut count as called
unrelated) against KING's thresholds on every pair.

    PYTHONPATH=. .venv/bin/python tools/bench/relate_cohort.py --workdir /tmp/relcoh --families 64 \\
        --length 2000000 --cuts 0.0442,0.0221 --threads 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

import _results
from _peers import sh
from relate_vs_king import _link_setting

CLI = [sys.executable, "-c", "from snpbag.cli import main; main()"]


def pair_keys(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """One integer per unordered pair of sample indices (the larger index first, as in a .kin0)."""
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    return np.maximum(i, j) * n + np.minimum(i, j)


def _index(ids: list[str], names) -> np.ndarray:
    where = {s: k for k, s in enumerate(ids)}
    return np.array([where[s] for s in names], dtype=np.int64)


def read_kin0(path: Path, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(pair keys, KINSHIP) of every row of a .kin0 (or a ``snpbag relate`` .rel), sorted by key."""
    import pandas as pd

    t = pd.read_csv(path, sep="\t", usecols=["#IID1", "IID2", "KINSHIP"], dtype={"#IID1": str, "IID2": str})
    keys = pair_keys(_index(ids, t["#IID1"]), _index(ids, t["IID2"]), len(ids))
    order = np.argsort(keys, kind="stable")
    return keys[order], t["KINSHIP"].to_numpy(np.float64)[order]


def cohort_truth(simdir: Path, ids: list[str], keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true degree, true realised kinship) of each pair of ``keys`` (sorted): the pairs of
    ``pedigree_pairs.tsv`` as listed, every other pair unrelated with realised kinship 0 (pairs
    across families share no founder)."""
    from snpbag.eval.relate import UNRELATED

    rows = [line.split("\t") for line in (simdir / "pedigree_pairs.tsv").read_text().splitlines()[1:] if line]
    k = pair_keys(_index(ids, [r[0] for r in rows]), _index(ids, [r[1] for r in rows]), len(ids))
    at = np.searchsorted(keys, k)
    if (at >= len(keys)).any() or (keys[np.minimum(at, len(keys) - 1)] != k).any():
        raise SystemExit(f"{simdir}: truth pairs missing from the kinship table")
    degree = np.full(len(keys), UNRELATED, dtype=np.int64)
    realised = np.zeros(len(keys))
    degree[at] = [UNRELATED if r[2] == "NA" else int(r[2]) for r in rows]
    realised[at] = [float(r[5]) for r in rows]
    return degree, realised


def called_in_cohort(rel_table: Path, ids: list[str], keys: np.ndarray) -> np.ndarray:
    """Degree called for each pair of ``keys`` by a ``snpbag relate`` run: its DEGREE where the pair
    was scored, unrelated where the prefilter dropped it."""
    import pandas as pd

    from snpbag.eval.relate import UNRELATED

    t = pd.read_csv(rel_table, sep="\t", usecols=["#IID1", "IID2", "DEGREE"], dtype=str)
    called = np.full(len(keys), UNRELATED, dtype=np.int64)
    at = np.searchsorted(keys, pair_keys(_index(ids, t["#IID1"]), _index(ids, t["IID2"]), len(ids)))
    called[at] = [UNRELATED if d == "UN" else int(d) for d in t["DEGREE"]]
    return called


def _log_value(path: Path, key: str) -> str:
    return dict(line.split("\t", 1) for line in path.read_text().splitlines())[key]


def main() -> None:
    from snpbag.eval.relate import degree_accuracy, prefilter_misses, prefilter_recall
    from snpbag.inference import relate as rel
    from snpbag.inference.relateersa import king_threshold_degrees
    from snpbag.simulate.cohort import simulate

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench_relate_cohort"))
    p.add_argument("--families", type=int, default=64, help="cohort families (47 genomes each at --max-degree 12)")
    p.add_argument("--train-families", type=int, default=6)
    p.add_argument("--length", type=int, default=2_000_000, help="bp per chromosome (22, full genetic lengths)")
    p.add_argument("--max-degree", type=int, default=12)
    p.add_argument("--array-fraction", type=float, default=0.2)
    p.add_argument("--density", choices=("array", "sequence"), default="array")
    p.add_argument("--patch-sites", type=int, default=128)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--cuts", default="0.0442,0.0221", help="--min-kinship values to run snpbag relate with")
    p.add_argument("--recall-cuts", default="0.0884,0.0442,0.0221,0.011", help="cuts whose recall is tabled")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--reuse", action="store_true", help="keep simulations and the model already in --workdir")
    _results.add_json_option(p)
    a = p.parse_args()
    cuts = [float(x) for x in a.cuts.split(",")]
    recall_cuts = sorted({*cuts, *(float(x) for x in a.recall_cuts.split(","))}, reverse=True)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[k] = str(a.threads)
    if not a.reuse:
        shutil.rmtree(a.workdir, ignore_errors=True)
    seconds: dict[str, float] = {}
    sims = {}
    for name, n, seed in (("train", a.train_families, a.seed), ("cohort", a.families, a.seed + 1)):
        d = a.workdir / "sim" / name
        if not (d / "simulation.json").exists():
            shutil.rmtree(d, ignore_errors=True)
            t0 = time.perf_counter()
            simulate(d, length=a.length, pedigree=n, chromosomes=22, seed=seed, max_degree=a.max_degree,
                     array_fraction=a.array_fraction)
            seconds[f"simulate_{name}"] = time.perf_counter() - t0
        sims[name] = d
    vcf_name = "pedigree_array.vcf.gz" if a.density == "array" else "pedigree.vcf.gz"
    model = a.workdir / "model"
    if not (model / rel.CONFIG_FILE).exists():
        shutil.rmtree(a.workdir / "train", ignore_errors=True)
        shutil.rmtree(model, ignore_errors=True)
        t0 = time.perf_counter()
        summary = rel.train(pedigree=[_link_setting(sims["train"], vcf_name, a.workdir / "train")], out=model,
                            patch_sites=a.patch_sites, max_degree=a.max_degree,
                            fit=rel.Fit(epochs=a.epochs, seed=a.seed))
        seconds["train"] = time.perf_counter() - t0
        print(summary.line(), flush=True)
    vcf = sims["cohort"] / vcf_name
    runs = a.workdir / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    threads = ["--threads", str(a.threads)]
    timing = []
    r = sh([*CLI, "king", str(vcf), "--out", str(runs / "king"), *threads], log=runs / "king.time")
    ids = [line.split("\t")[0] for line in (sims["cohort"] / "samples.tsv").read_text().splitlines()[1:]]
    keys, kin = read_kin0(runs / "king.kin0", ids)
    n = len(ids)
    if len(keys) != n * (n - 1) // 2:
        raise SystemExit(f"{runs / 'king.kin0'}: {len(keys)} rows, not every pair of {n} samples")
    timing.append({"command": "snpbag king (every pair to .kin0)", "pairs_scored": None, "rows_written": len(keys),
                   **{k: r[k] for k in ("wall_s", "cpu_s", "peak_mib", "load_1min")}})
    print(f"king: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, {r['peak_mib']:.0f} MiB", flush=True)
    truth, realised = cohort_truth(sims["cohort"], ids, keys)
    tables = {"prefilter_recall": prefilter_recall(truth, kin, recall_cuts),
              "prefilter_work": [{"min_kinship": x, "pairs_kept": int((kin >= x).sum()),
                                  "related_kept": int(((truth > 0) & (kin >= x)).sum()),
                                  "unrelated_kept": int(((truth < 0) & (kin >= x)).sum()),
                                  "share_of_all_pairs": float((kin >= x).mean())} for x in recall_cuts]}
    king_called = king_threshold_degrees(kin)
    for x in cuts:
        out = runs / f"relate_{x:g}"
        r = sh([*CLI, "relate", "--model", str(model), "--input", str(vcf), "--out", str(out), "--min-kinship",
                str(x), *threads], log=runs / f"relate_{x:g}.time")
        scored = int(_log_value(Path(f"{out}.rel.log"), "pairs_scored"))
        timing.append({"command": f"snpbag relate --min-kinship {x:g}", "pairs_scored": scored,
                       "rows_written": scored, **{k: r[k] for k in ("wall_s", "cpu_s", "peak_mib", "load_1min")}})
        print(f"relate {x:g}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, {r['peak_mib']:.0f} MiB, "
              f"{scored:,} pairs scored", flush=True)
        tables[f"misses_{x:g}"] = prefilter_misses(truth, kin, realised, x)
        called = called_in_cohort(Path(f"{out}.rel"), ids, keys)
        acc, king_acc = degree_accuracy(truth, called), degree_accuracy(truth, king_called)
        tables[f"degrees_{x:g}"] = [
            {"degree": d, "pairs": acc[d]["n"], "relate_exact": acc[d]["exact"], "relate_within1": acc[d]["within1"],
             "KING_exact": king_acc[d]["exact"], "KING_within1": king_acc[d]["within1"]} for d in acc]
    tables["timing"] = timing
    for row in tables["prefilter_recall"]:
        print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    meta = rel.load(model)[1]["training"]
    _results.write(a.json, command="relate_cohort", results=tables, info={
        "samples": n, "families": a.families, "pairs": len(keys), "related_pairs": int((truth > 0).sum()),
        "density": a.density, "length_bp": a.length, "variants_train": meta["variants"],
        "patch_sites": a.patch_sites, "training_pairs": sum(meta["pairs"][c] for c in meta["pairs"] if ":" not in c),
        **{f"seconds_{k}": round(v, 1) for k, v in seconds.items()}})


if __name__ == "__main__":
    main()
