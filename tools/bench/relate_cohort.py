"""All pairs of a simulated cohort: ``snpbag king`` alone against ``snpbag relate`` with each prefilter.

Steps: ``snpbag simulate --pedigree --max-degree D --array-fraction F --demography M`` twice at
the same length — training families (``--seed``) and the cohort (``--families`` families, ``--seed + 1``:
other founders; 47 members per family at D = 12, so 64 families are 3,008 genomes and every
pair across families is unrelated) — and ``snpbag relate train`` on the training families at
the chosen density; or an existing cohort simulation (``--sim``) and/or relate directory
(``--model``), read only (a model trained elsewhere skips the training families: its chromosomes,
SNPs per cM and populations must match the cohort's). Then, each under ``/usr/bin/time -v`` with ``--threads``: ``snpbag king``
on the cohort (every pair written to a .kin0) and ``snpbag relate --genetic-map SIM --populations
samples.tsv`` for each run of ``--runs`` (``segments:S`` = ``--prefilter segments --seed-cm S``,
``king:X`` = ``--min-kinship X``, ``none`` = every pair). Reported: wall, CPU (user + sys) and peak
RSS of each, the pairs each prefilter passes; in process, for each seed length of ``--seed-cms``,
the share of each true degree the segment prefilter keeps (seed pairs of the PBWT pass plus KING's
degree 1–3 range from the all-pairs .kin0) beside KING's cuts, and why a related pair is missed
(it shares no IBD at all in the simulator's truth; the haplotype detector finds no segment of its
threshold t on it; or it has such a segment but no seed of S cM); and the degree calls of each
run (pairs a prefilter drops count as called unrelated) against KING's thresholds on every pair.

    PYTHONPATH=. .venv/bin/python tools/bench/relate_cohort.py --workdir /tmp/relcoh --families 12 \\
        --length 10000000 --demography growth --model DIR --runs segments:2,king:0.0442 --threads 2

The simulator holds every genome's genotypes at once, so memory rather than time bounds
``--families`` at 10 Mb (docs/benchmarks.md, "All pairs of a cohort").
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


def _simulated_inputs(a) -> tuple[Path, Path, dict]:
    """(cohort simulation, relate directory, seconds) from ``--sim``/``--model`` or simulated and trained here."""
    from snpbag.inference import relate as rel
    from snpbag.simulate.cohort import simulate

    seconds: dict[str, float] = {}
    if a.sim is not None and a.model is not None:
        return a.sim, a.model, seconds
    if not a.reuse:
        shutil.rmtree(a.workdir, ignore_errors=True)
    sims = {} if a.sim is None else {"cohort": a.sim}
    wanted = (("train", a.train_families, a.seed),) if a.model is None else ()
    for name, n, seed in wanted + ((("cohort", a.families, a.seed + 1),) if a.sim is None else ()):
        d = a.workdir / "sim" / name
        if not (d / "simulation.json").exists():
            shutil.rmtree(d, ignore_errors=True)
            t0 = time.perf_counter()
            simulate(d, length=a.length, pedigree=n, chromosomes=22, seed=seed, max_degree=a.max_degree,
                     array_fraction=a.array_fraction, demography=a.demography)
            seconds[f"simulate_{name}"] = time.perf_counter() - t0
        sims[name] = d
    if a.model is not None:
        return sims["cohort"], a.model, seconds
    model = a.workdir / "model"
    if not (model / rel.CONFIG_FILE).exists():
        shutil.rmtree(a.workdir / "train", ignore_errors=True)
        shutil.rmtree(model, ignore_errors=True)
        t0 = time.perf_counter()
        summary = rel.train(pedigree=[_link_setting(sims["train"], _vcf_name(a), a.workdir / "train")], out=model,
                            patch_sites=a.patch_sites, max_degree=a.max_degree,
                            fit=rel.Fit(epochs=a.epochs, seed=a.seed))
        seconds["train"] = time.perf_counter() - t0
        print(summary.line(), flush=True)
    return sims["cohort"], model, seconds


def _vcf_name(a) -> str:
    return "pedigree_array.vcf.gz" if a.density == "array" else "pedigree.vcf.gz"


def _run_args(run: str) -> tuple[str, list[str]]:
    """(label, snpbag relate options) of one ``--runs`` item."""
    kind, _, value = run.partition(":")
    if kind == "segments":
        return f"segments {value} cM", ["--prefilter", "segments", "--seed-cm", value]
    if kind == "king":
        return f"king {value}", ["--min-kinship", value]
    if kind == "none":
        return "none", ["--prefilter", "none"]
    raise SystemExit(f"--runs {run!r}: use segments:S, king:X or none")


def seed_recall(vcf: Path, sim: Path, ids: list[str], keys: np.ndarray, kin: np.ndarray, truth: np.ndarray,
                realised: np.ndarray, seed_cms: list[float], king_cuts: list[float]) -> dict[str, list[dict]]:
    """The segment prefilter's recall per true degree at each seed length beside KING's cuts, and why the
    related pairs it drops are dropped (module text)."""
    from snpbag.eval.relate import UNRELATED, kept_share, prefilter_misses
    from snpbag.inference.relateersa import DETECTORS
    from snpbag.inference.relatepairs import KING_DEGREE3
    from snpbag.kinship.hapibd import hap_ibd_segments
    from snpbag.kinship.seeds import seed_pairs
    from snpbag.kinship.segments import read_genome
    from snpbag.simulate.pedigree import simulation_genetic_map

    genome = read_genome(vcf, simulation_genetic_map(sim), haplotypes=True)
    if genome.ids != ids:
        raise SystemExit(f"{vcf}: samples differ from samples.tsv")
    n = len(ids)
    related = np.flatnonzero(truth != UNRELATED)
    t = DETECTORS["hap"].threshold
    segs = hap_ibd_segments(genome, np.stack([keys[related] // n, keys[related] % n], axis=1), min_cm=t)
    has_segment = np.zeros(len(keys), bool)
    has_segment[related] = segs.count() > 0
    kept, seconds, work = {}, [], []
    close = kin >= KING_DEGREE3
    for s in seed_cms:
        t0 = time.perf_counter()
        p = seed_pairs(genome, min_cm=s)
        seconds.append({"seed_cm": s, "pbwt_s": round(time.perf_counter() - t0, 2)})
        seeded = np.isin(keys, pair_keys(p[:, 0], p[:, 1], n))
        kept[f"seg{s:g}"] = seeded | close
        work.append({"prefilter": f"segments {s:g} cM", "seed_pairs": int(seeded.sum()),
                     "pairs_kept": int(kept[f"seg{s:g}"].sum()),
                     "related_kept": int((kept[f"seg{s:g}"] & (truth != UNRELATED)).sum()),
                     "unrelated_kept": int((kept[f"seg{s:g}"] & (truth == UNRELATED)).sum()),
                     "share_of_all_pairs": float(kept[f"seg{s:g}"].mean())})
    for x in king_cuts:
        kept[f"king{x:g}"] = kin >= x
        work.append({"prefilter": f"king {x:g}", "seed_pairs": None, "pairs_kept": int(kept[f"king{x:g}"].sum()),
                     "related_kept": int((kept[f"king{x:g}"] & (truth != UNRELATED)).sum()),
                     "unrelated_kept": int((kept[f"king{x:g}"] & (truth == UNRELATED)).sum()),
                     "share_of_all_pairs": float(kept[f"king{x:g}"].mean())})
    misses = []
    for s in seed_cms:
        k = kept[f"seg{s:g}"]
        for d in sorted(set(truth[related].tolist())):
            m = (truth == d) & ~k
            misses.append({"seed_cm": s, "degree": str(d), "pairs": int((truth == d).sum()), "missed": int(m.sum()),
                           "no_ibd": int((m & (realised == 0)).sum()),
                           "no_segment": int((m & (realised > 0) & ~has_segment).sum()),
                           "segment_no_seed": int((m & has_segment).sum())})
    out = {"prefilter_recall": kept_share(truth, kept), "prefilter_work": work, "prefilter_misses": misses,
           "pbwt_seconds": seconds, "kept": kept}
    for x in king_cuts:
        out[f"misses_king_{x:g}"] = prefilter_misses(truth, kin, realised, x)
    return out


def calls_lost(all_pairs_called: np.ndarray, truth: np.ndarray, kept: dict[str, np.ndarray]) -> list[dict]:
    """Per prefilter: the pairs that ``snpbag relate --prefilter none`` calls related and the prefilter drops
    (they come out unrelated), per true degree (``UN``: unrelated pairs called related, a false call the
    prefilter removes)."""
    from snpbag.eval.relate import UNRELATED

    rows = []
    for d in sorted(set(truth.tolist()), key=lambda x: (x == UNRELATED, x)):
        m = (truth == d) & (all_pairs_called != UNRELATED)
        rows.append({"degree": "UN" if d == UNRELATED else str(d), "called_related": int(m.sum()),
                     **{f"dropped_{name}": int((m & ~mask).sum()) for name, mask in kept.items()}})
    return rows


def main() -> None:
    from snpbag.eval.relate import degree_accuracy
    from snpbag.inference import relate as rel
    from snpbag.inference.relateersa import king_threshold_degrees

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench_relate_cohort"))
    p.add_argument("--sim", type=Path, default=None, help="an existing `snpbag simulate --pedigree` cohort (read only)")
    p.add_argument("--model", type=Path, default=None, help="an existing relate directory with segments (read only; "
                   "without --sim only the cohort is simulated: match its chromosomes, density and populations)")
    p.add_argument("--demography", default="ooa", help="snpbag simulate --demography of the founders (growth: "
                   "explosive recent growth and an admixed population)")
    p.add_argument("--families", type=int, default=64, help="cohort families (47 genomes each at --max-degree 12)")
    p.add_argument("--train-families", type=int, default=6)
    p.add_argument("--length", type=int, default=2_000_000, help="bp per chromosome (22, full genetic lengths)")
    p.add_argument("--max-degree", type=int, default=12)
    p.add_argument("--array-fraction", type=float, default=0.2)
    p.add_argument("--density", choices=("array", "sequence"), default="array")
    p.add_argument("--patch-sites", type=int, default=128)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--runs", default="segments:2,king:0.0442", help="snpbag relate runs: segments:S, king:X, none")
    p.add_argument("--all-pairs-rel", type=Path, default=None,
                   help="an earlier `snpbag relate --prefilter none` table of this cohort: the calls each prefilter "
                        "drops, without running none again")
    p.add_argument("--seed-cms", default="1,2,3,4,6,8", help="seed lengths whose recall is tabled")
    p.add_argument("--recall-cuts", default="0.0442,0.011", help="KING cuts whose recall is tabled beside them")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--reuse", action="store_true", help="keep simulations and the model already in --workdir")
    _results.add_json_option(p)
    a = p.parse_args()
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[k] = str(a.threads)
    sim, model, seconds = _simulated_inputs(a)
    vcf = sim / _vcf_name(a)
    runs = a.workdir / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    threads = ["--threads", str(a.threads)]
    timing = []
    r = sh([*CLI, "king", str(vcf), "--out", str(runs / "king"), *threads], log=runs / "king.time")
    ids = [line.split("\t")[0] for line in (sim / "samples.tsv").read_text().splitlines()[1:]]
    keys, kin = read_kin0(runs / "king.kin0", ids)
    n = len(ids)
    if len(keys) != n * (n - 1) // 2:
        raise SystemExit(f"{runs / 'king.kin0'}: {len(keys)} rows, not every pair of {n} samples")
    timing.append({"command": "snpbag king (every pair to .kin0)", "pairs_scored": None, "prefilter_s": None,
                   **{k: r[k] for k in ("wall_s", "cpu_s", "peak_mib", "load_1min")}})
    print(f"king: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, {r['peak_mib']:.0f} MiB", flush=True)
    truth, realised = cohort_truth(sim, ids, keys)
    tables = seed_recall(vcf, sim, ids, keys, kin, truth, realised, [float(x) for x in a.seed_cms.split(",")],
                         [float(x) for x in a.recall_cuts.split(",")])
    kept = tables.pop("kept")
    print(tables["prefilter_work"], flush=True)
    king_called = king_threshold_degrees(kin)
    tables["degrees_KING"] = [{"degree": d, "pairs": v["n"], "exact": v["exact"], "within1": v["within1"]}
                              for d, v in degree_accuracy(truth, king_called).items()]
    for run in filter(None, a.runs.split(",")):
        label, opts = _run_args(run)
        out = runs / f"relate_{run.replace(':', '_')}"
        r = sh([*CLI, "relate", "--model", str(model), "--input", str(vcf), "--out", str(out), "--genetic-map",
                str(sim), "--populations", str(sim / "samples.tsv"), *opts, *threads], log=Path(f"{out}.time"))
        log_file = Path(f"{out}.rel.log")
        scored = int(_log_value(log_file, "pairs_scored"))
        pre = _log_value(log_file, "prefilter_seconds") if "prefilter_seconds" in log_file.read_text() else None
        timing.append({"command": f"snpbag relate --prefilter {label}", "pairs_scored": scored,
                       "prefilter_s": None if pre is None else float(pre),
                       **{k: r[k] for k in ("wall_s", "cpu_s", "peak_mib", "load_1min")}})
        print(f"relate {label}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, {r['peak_mib']:.0f} MiB, "
              f"{scored:,} pairs scored", flush=True)
        called = called_in_cohort(Path(f"{out}.rel"), ids, keys)
        acc = degree_accuracy(truth, called)
        tables[f"degrees_{run}"] = [{"degree": d, "pairs": v["n"], "exact": v["exact"], "within1": v["within1"]}
                                    for d, v in acc.items()]
        if run == "none":
            tables["calls_lost"] = calls_lost(called, truth, kept)
    if a.all_pairs_rel is not None:
        tables["calls_lost"] = calls_lost(called_in_cohort(a.all_pairs_rel, ids, keys), truth, kept)
    tables["timing"] = timing
    meta = rel.load(model)[1]["training"]
    _results.write(a.json, command="relate_cohort", results=tables, info={
        "samples": n, "pairs": len(keys), "related_pairs": int((truth > 0).sum()), "cohort": str(sim),
        "model": str(model), "input": str(vcf), "variants_train": meta["variants"],
        **{f"seconds_{k}": round(v, 1) for k, v in seconds.items()}})


if __name__ == "__main__":
    main()
