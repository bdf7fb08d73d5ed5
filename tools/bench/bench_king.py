"""Benchmark ``snpbag king`` against plink2 --make-king-table and vcftools --relatedness2.

Part 1 (speed): one simulated cohort (``snpbag simulate``: 3 populations, out-of-Africa
demography) → wall time, CPU time and peak RSS of each tool on the same bgzipped VCF,
under ``/usr/bin/time -v``, for each ``--threads`` count (both tools get ``--threads N``
and, with ``--pin``, are pinned to N cores by taskset so no helper thread uses more),
best of ``--repeat`` runs with the machine's load average noted. plink2 is also timed
from its own .pgen, snpbag from a snpbag store, so the kinship computation itself can be
compared apart from VCF parsing. snpbag's .kin0 is checked to equal plink2's.
vcftools --relatedness2 loops over every pair and site (hours at 3,000 samples), so all
three tools are also timed on the first ``--vcftools-samples`` samples of the same VCF.

Part 2 (accuracy, optional): families from ``snpbag simulate --pedigree`` → for every
truth pair, the degree KING's cut points assign to snpbag's and plink2's kinship and
to the true IBD kinship (the best those cut points can do), per true degree: exact
and within ±1 degree (degrees ≥ 4 and unrelated pairs count as "unrelated"); and the
parent–offspring / full-sibling split of snpbag's INFTYPE with ``--po-ibs0 0.008`` (the
default, KING's cut) and ``--po-ibs0 auto``.

Usage::

    python tools/bench/bench_king.py --workdir /tmp/bench_king --samples-per-pop 1000 \
        --length 10000000 --threads 1,2 --repeat 3 --families 20 --ped-length 2000000

Prints markdown tables (also written to WORKDIR/results.md) and writes the results as JSON
(``--json``, default bench-results/; tools/bench/_results.py).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import _results

ROOT = Path(__file__).resolve().parents[2]
SNPBAG = [sys.executable, "-m", "snpbag.cli"]


def timed(cmd: list[str], *, env: dict | None = None, log: Path, repeat: int = 1, cores: int | None = None) -> dict:
    """Best of ``repeat`` runs of ``cmd`` under /usr/bin/time -v: wall, CPU (user+sys) and peak RSS.

    ``cores``: pin the process to the first ``cores`` CPUs (taskset), so helper threads
    (zarr, Blosc, OpenMP) cannot use more cores than the tool's thread count. The
    1-minute load average before each run is kept (other jobs on the machine).
    """
    pin = ["taskset", "-c", f"0-{cores - 1}" if cores > 1 else "0"] if cores else []
    best, walls = None, []
    for _ in range(repeat):
        if "--out" in cmd:  # snpbag refuses to overwrite its outputs
            Path(cmd[cmd.index("--out") + 1] + ".kin0").unlink(missing_ok=True)
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        with open(log, "w") as fh:
            p = subprocess.run(["/usr/bin/time", "-v", *pin, *cmd], stdout=fh, stderr=subprocess.STDOUT, env=env)
        wall = time.perf_counter() - t0
        text = log.read_text()
        if p.returncode != 0:
            raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{text[-3000:]}")
        rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
        cpu = sum(float(re.search(rf"{k} time \(seconds\): ([\d.]+)", text).group(1)) for k in ("User", "System"))
        walls.append(wall)
        r = {"wall_s": wall, "cpu_s": cpu, "rss_mib": rss / 1024, "load": load, "walls": walls}
        best = r if best is None or wall < best["wall_s"] else best
    return best


def thread_env(threads: int) -> dict:
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(threads)
    env.setdefault("OMP_WAIT_POLICY", "passive")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def simulate(outdir: Path, **kw) -> Path:
    from snpbag.simulate.cohort import simulate as run

    if not outdir.exists():
        t0 = time.perf_counter()
        run(outdir, **kw)
        print(f"simulated {outdir} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return outdir


def count_records(vcf: Path) -> int:
    out = subprocess.run(f"zcat {vcf} | grep -vc '^#'", shell=True, capture_output=True, text=True)
    return int(out.stdout.strip())


def strip_inftype(path: Path) -> list[str]:
    return ["\t".join(line.split("\t")[:-1]) for line in path.read_text().splitlines()]


# --- part 1 --------------------------------------------------------------------------------


def records(rows: list[tuple[str, dict]], **fields) -> list[dict]:
    """The rows of :func:`table` for the results file."""
    return [{"tool": name, **fields, "wall_s": r["wall_s"], "runs_s": r["walls"], "cpu_s": r["cpu_s"],
             "peak_rss_mib": r["rss_mib"], "load_before": r["load"]} for name, r in rows]


def table(rows: list[tuple[str, dict]]) -> list[str]:
    out = ["| tool | wall (s), best | all runs (s) | CPU user+sys (s) | peak RSS (MiB) | load before |",
           "|---|---:|---:|---:|---:|---:|"]
    return out + [f"| {name} | {r['wall_s']:.2f} | {' '.join(f'{w:.2f}' for w in r['walls'])} | {r['cpu_s']:.2f} | "
                  f"{r['rss_mib']:.0f} | {r['load']:.1f} |" for name, r in rows]


def speed(args, work: Path, tables: dict, info: dict) -> list[str]:
    sim = simulate(work / "cohort", samples_per_pop=args.samples_per_pop, length=args.length, seed=args.seed)
    vcf = sim / "cohort.vcf.gz"
    n = 3 * args.samples_per_pop
    runs = work / "runs"
    if runs.exists():
        shutil.rmtree(runs)
    runs.mkdir()
    king_flags = ["--snps-only", "just-acgt", "--max-alleles", "2", "--make-king-table"]
    store = work / "cohort.zarr"
    if not store.exists():
        subprocess.run([*SNPBAG, "convert", str(vcf), str(store), "--min-maf", "0", "--threads", "1"],
                       check=True, env=thread_env(1))
    subprocess.run(["plink2", "--threads", "1", "--vcf", str(vcf), "--snps-only", "just-acgt", "--max-alleles", "2",
                    "--make-pgen", "--out", str(runs / "pg")], check=True, capture_output=True)
    nvar = count_records(vcf)
    out = [f"Cohort: {n} samples ({args.samples_per_pop} per population), {args.length / 1e6:g} Mb, "
           f"{nvar} biallelic SNPs, {n * (n - 1) // 2} pairs; device = {args.device}; best of {args.repeat} runs.",
           ""]
    same = same_store = True
    for t in args.threads:
        env = thread_env(t)
        plink = ["plink2", "--threads", str(t), "--memory", str(args.plink_memory)]
        kw = {"repeat": args.repeat, "cores": t if args.pin else None}
        ours = [*SNPBAG, "king", "--device", args.device, "--threads", str(t)]
        rows = [("snpbag king (store)", timed([*ours, str(store), "--out", str(runs / f"s{t}")], env=env,
                                              log=runs / f"s{t}.log", **kw)),
                ("plink2 --make-king-table (pgen)", timed([*plink, "--pfile", str(runs / "pg"), "--make-king-table",
                                                           "--out", str(runs / f"p{t}")],
                                                          log=runs / f"p{t}.log", **kw)),
                *([("snpbag king --kernel gemm (store)", timed([*ours, "--kernel", "gemm", str(store), "--out",
                                                                str(runs / f"g{t}")], env=env, log=runs / f"g{t}.log",
                                                               **kw))] if args.also_gemm else []),
                ("snpbag king (VCF)", timed([*ours, str(vcf), "--out", str(runs / f"sv{t}")], env=env,
                                            log=runs / f"sv{t}.log", **kw)),
                ("plink2 --make-king-table (VCF)", timed([*plink, "--vcf", str(vcf), *king_flags, "--out",
                                                          str(runs / f"pv{t}")], log=runs / f"pv{t}.log", **kw))]
        pin = f", pinned to {t} core(s) with taskset" if args.pin else ""
        out += [f"{t} thread(s) (`--threads {t}` for both tools{pin}):", ""] + table(rows) + [""]
        tables.setdefault("speed", []).extend(records(rows, threads=t))
        same &= strip_inftype(runs / f"sv{t}.kin0") == (runs / f"pv{t}.kin0").read_text().splitlines()
        same_store &= (runs / f"s{t}.kin0").read_bytes() == (runs / f"sv{t}.kin0").read_bytes()
        if args.also_gemm:
            same_store &= (runs / f"g{t}.kin0").read_bytes() == (runs / f"sv{t}.kin0").read_bytes()
    out += [f"snpbag .kin0 (without INFTYPE) byte-identical to plink2's: {'yes' if same else 'NO'}; "
            f"store input identical to VCF input{' and to --kernel gemm' if args.also_gemm else ''}: "
            f"{'yes' if same_store else 'NO'}."]
    info.update(samples=n, variants=nvar, pairs=n * (n - 1) // 2, kin0_identical_to_plink2=same,
                store_identical_to_vcf=same_store)
    if args.vcftools_samples:
        k = args.vcftools_samples
        t = args.threads[0]
        env = thread_env(t)
        plink = ["plink2", "--threads", str(t), "--memory", str(args.plink_memory)]
        keep = work / f"keep{k}.txt"
        keep.write_text("\n".join(subprocess.run(["bcftools", "query", "-l", str(vcf)], capture_output=True,
                                                 text=True, check=True).stdout.split()[:k]) + "\n")
        sub = work / f"cohort_{k}.vcf.gz"
        if not sub.exists():
            subprocess.run(["bcftools", "view", "-S", str(keep), "-Oz", "-o", str(sub), str(vcf)], check=True)
        kw = {"repeat": args.repeat, "cores": t if args.pin else None}
        rows = [("snpbag king", timed([*SNPBAG, "king", str(sub), "--out", str(runs / f"snpbag{k}"), "--device",
                                       args.device, "--threads", str(t)], env=env, log=runs / f"snpbag{k}.log", **kw)),
                ("plink2 --make-king-table", timed([*plink, "--vcf", str(sub), *king_flags, "--out",
                                                    str(runs / f"plink2{k}")], log=runs / f"plink2{k}.timelog", **kw)),
                ("vcftools --relatedness2", timed(["vcftools", "--gzvcf", str(sub), "--relatedness2", "--out",
                                                   str(runs / f"vcftools{k}")], log=runs / f"vcftools{k}.timelog",
                                                  **kw))]
        out += ["", f"First {k} samples of the same VCF (bcftools view -S), {k * (k - 1) // 2} pairs, "
                    f"all three tools reading the VCF, {t} thread(s):", ""] + table(rows)
        tables["subset"] = records(rows, samples=k, threads=t)
    return out


# --- part 2 --------------------------------------------------------------------------------


def _kin0(path: Path) -> dict[tuple[str, str], float]:
    out = {}
    with open(path) as fh:
        header = fh.readline().rstrip("\n").split("\t")
        k = header.index("KINSHIP")
        for line in fh:
            f = line.rstrip("\n").split("\t")
            out[(f[0], f[1])] = out[(f[1], f[0])] = float(f[k])
    return out


def accuracy(args, work: Path, tables: dict) -> list[str]:
    from snpbag.kinship.degrees import degree

    try:
        import snpbag.simulate.pedigree  # noqa: F401
    except ImportError:
        return ["(snpbag.simulate.pedigree not available: degree accuracy skipped)"]
    sim = simulate(work / "pedigree", pedigree=args.families, length=args.ped_length, seed=args.seed + 1)
    vcf = sim / "pedigree.vcf.gz"
    runs = work / "ped_runs"
    if runs.exists():
        shutil.rmtree(runs)
    runs.mkdir()
    env = thread_env(args.threads[0])
    for name, flags in (("snpbag", []), ("snpbag_auto", ["--po-ibs0", "auto"])):  # KING's 0.008 cut; relative cut
        with open(runs / f"{name}.stderr", "w") as err:
            subprocess.run([*SNPBAG, "-v", "king", str(vcf), "--out", str(runs / name), *flags], check=True, env=env,
                           stderr=err)
    subprocess.run(["plink2", "--threads", str(args.threads[0]), "--vcf", str(vcf), "--snps-only", "just-acgt",
                    "--max-alleles", "2", "--make-king-table", "--out", str(runs / "plink2")],
                   check=True, capture_output=True)
    ours, theirs = _kin0(runs / "snpbag.kin0"), _kin0(runs / "plink2.kin0")
    truth = [line.rstrip("\n").split("\t") for line in open(sim / "pedigree_pairs.tsv")][1:]
    true_deg = np.array([int(t[2]) if t[2] != "NA" and int(t[2]) <= 3 else -1 for t in truth])
    est = {
        "snpbag": np.array([ours[(t[0], t[1])] for t in truth]),
        "plink2": np.array([theirs[(t[0], t[1])] for t in truth]),
        "true IBD kinship": np.array([float(t[5]) for t in truth]),
    }
    called = {k: degree(v) for k, v in est.items()}
    n_samples = len({t[0] for t in truth} | {t[1] for t in truth})
    nvar = count_records(vcf)
    out = [f"Pedigrees: {args.families} families ({n_samples} samples), 22 chromosomes × "
           f"{args.ped_length / 1e6:g} Mb stretches carrying each autosome's genetic length, {nvar} SNPs; "
           f"{len(truth)} truth pairs. Degree by KING cut points 2^-1.5 … 2^-4.5; degree ≥ 4 and "
           "unrelated pairs both count as 'unrelated'. Cells: exact / within ±1 degree (unrelated: exact).",
           "", "| true degree | pairs | " + " | ".join(est) + " |", "|---|---:|" + "---:|" * len(est)]
    for d, name in ((0, "0 (dup/MZ)"), (1, "1"), (2, "2"), (3, "3"), (-1, "≥4 / unrelated")):
        m = true_deg == d
        if not m.any():
            continue
        cells = []
        for k in est:
            c = called[k][m]
            exact = np.mean(c == d)
            if d >= 0:
                near = np.mean((c >= 0) & (np.abs(c.astype(int) - d) <= 1) | ((d == 3) & (c == -1)))
                cells.append(f"{exact:.3f} / {near:.3f}")
            else:
                cells.append(f"{exact:.3f}")
        out.append(f"| {name} | {int(m.sum())} | " + " | ".join(cells) + " |")
        tables.setdefault("degree_accuracy", []).append({"true_degree": name, "pairs": int(m.sum()),
                                                         **dict(zip(est, cells))})
    same = np.array_equal(est["snpbag"], est["plink2"], equal_nan=True)
    out += ["", f"snpbag and plink2 kinship identical on every truth pair: {'yes' if same else 'NO'}."]
    # parent-offspring vs full siblings: INFTYPE with --po-ibs0 0.008 (default) and auto
    fixed, auto = _inftype(runs / "snpbag.kin0"), _inftype(runs / "snpbag_auto.kin0")
    cut = float(re.search(r"PO/FS IBS0 cut ([\d.e-]+)", (runs / "snpbag_auto.stderr").read_text()).group(1))
    lines = ["", "First-degree split by snpbag's INFTYPE: pairs of each true relationship called correctly with "
                 f"`--po-ibs0 0.008` (default, KING's cut) and `--po-ibs0 auto` (0.1 x cohort mean(2p²q²) = "
                 f"{cut:.4g}); IBS0 proportions of the true pairs (min / median / max):", "",
             "| truth | pairs | 0.008 correct | auto correct | IBS0 min / median / max |", "|---|---:|---:|---:|---|"]
    for rel, label in (("parent-offspring", "PO"), ("full siblings", "FS")):
        sel = [(t[0], t[1]) for t in truth if t[3] == rel]
        if not sel:
            continue
        ibs0 = np.array([fixed[p][0] for p in sel])
        tables.setdefault("inftype", []).append({
            "truth": rel, "pairs": len(sel), "po_ibs0_0.008_correct": np.mean([fixed[p][1] == label for p in sel]),
            "po_ibs0_auto_correct": np.mean([auto[p][1] == label for p in sel]), "auto_cut": cut,
            "ibs0_min": ibs0.min(), "ibs0_median": np.median(ibs0), "ibs0_max": ibs0.max()})
        lines.append(f"| {rel} | {len(sel)} | {np.mean([fixed[p][1] == label for p in sel]):.3f} | "
                     f"{np.mean([auto[p][1] == label for p in sel]):.3f} | "
                     f"{ibs0.min():.4g} / {np.median(ibs0):.4g} / {ibs0.max():.4g} |")
    return out + lines


def _inftype(path: Path) -> dict[tuple[str, str], tuple[float, str]]:
    """(IBS0 proportion, INFTYPE) of each pair of a default-column snpbag .kin0."""
    out = {}
    with open(path) as fh:
        fh.readline()
        for line in fh:
            f = line.rstrip("\n").split("\t")
            out[(f[0], f[1])] = out[(f[1], f[0])] = (float(f[4]), f[6])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_king"))
    ap.add_argument("--samples-per-pop", type=int, default=1000)
    ap.add_argument("--length", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2],
                    help="comma-separated thread counts to time, e.g. 1,2")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best wall time is reported")
    ap.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                    help="pin each run to as many cores as threads (taskset)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--plink-memory", type=int, default=4000, help="plink2 --memory (MiB)")
    ap.add_argument("--vcftools-samples", type=int, default=300,
                    help="also time all three tools (vcftools included) on the first N samples (0: skip)")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--also-gemm", action="store_true",
                    help="also time snpbag's int8 GEMM kernel (--kernel gemm, torch) on the store")
    ap.add_argument("--families", type=int, default=0, help="pedigree families for the accuracy part (0: skip)")
    ap.add_argument("--ped-length", type=int, default=2_000_000)
    _results.add_json_option(ap)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    lines = [f"bench_king {' '.join(sys.argv[1:])}  ({time.strftime('%Y-%m-%d')})", ""]
    tables, info = {}, {}
    if not args.skip_speed:
        lines += speed(args, args.workdir, tables, info) + [""]
    if args.families:
        lines += accuracy(args, args.workdir, tables)
    text = "\n".join(lines) + "\n"
    (args.workdir / "results.md").write_text(text)
    print(text)
    _results.write(args.json, command="bench_king", results=tables, info=info)


if __name__ == "__main__":
    main()
