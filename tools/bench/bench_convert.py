"""Benchmark ``snpbag convert`` against bio2zarr's vcf2zarr and plink2 --make-pgen.

Measures, for one simulated cohort: wall time, peak RSS (``/usr/bin/time -v``), output
size and bits per genotype; then the time to read one sample's genotypes at a whole tile (the
vocabulary sites of one tile, up to 81,920) from snpbag's layout, from the same
genotypes re-chunked without sharding, and from vcf2zarr's default chunking.

Usage::

    .venv/bin/python tools/bench/bench_convert.py --samples-per-pop 1000 --length 10000000 \
        --workdir /tmp/bench_convert --threads 2

Prints a Markdown section and writes the results as JSON (``--json``; tools/bench/_results.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import zarr

import _results

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def make_vcf(workdir: Path, samples_per_pop: int, length: int, seed: int) -> Path:
    """Simulated cohort via snpbag.simulate.cohort (3-population out-of-Africa model)."""
    out = workdir / "sim"
    vcf = out / "cohort.vcf.gz"
    if vcf.exists():
        return vcf
    from snpbag.simulate.cohort import simulate

    simulate(out, samples_per_pop=samples_per_pop, length=length, chrom="22", seed=seed)
    return vcf


def timed(cmd: list[str], log: Path) -> dict:
    """Run ``cmd`` under /usr/bin/time -v; wall seconds and peak RSS (MiB)."""
    t0 = time.perf_counter()
    res = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    log.write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({res.returncode}); see {log}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr).group(1))
    cpu = sum(float(re.search(rf"{k} time \(seconds\): ([\d.]+)", res.stderr).group(1)) for k in ("User", "System"))
    return {"seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "peak_rss_mib": round(rss / 1024)}


def dir_bytes(path: Path) -> tuple[int, int]:
    total, n = 0, 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
            n += 1
    return total, n


def tile_read_ms(arr, variants: np.ndarray, samples: np.ndarray) -> float:
    """Median ms to read one sample's genotypes at ``variants`` (chunk-aligned range reads)."""
    times = []
    chunk = arr.chunks[0]
    for s in samples:
        t0 = time.perf_counter()
        which = variants // chunk
        for c in np.unique(which):
            v = variants[which == c]
            block = arr[int(v[0]):int(v[-1]) + 1, int(s)]
            _ = block[v - v[0]]
        times.append(time.perf_counter() - t0)
    return round(1000 * float(np.median(times)), 1)


def rechunk(src, dst: Path, chunks, shards=None) -> None:
    from snpbag.store import schema

    g = zarr.open_group(str(dst), mode="w", zarr_format=3)
    a = g.create_array("call_genotype", shape=src.shape, dtype="int8", chunks=chunks, shards=shards,
                       compressors=schema.genotype_compressors(), fill_value=-1)
    step = (shards or chunks)[0]
    for i in range(0, src.shape[0], step):
        a[i:i + step] = src[i:i + step]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples-per-pop", type=int, default=1000)
    ap.add_argument("--length", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_convert"))
    ap.add_argument("--reads", type=int, default=20, help="samples timed for the tile read")
    _results.add_json_option(ap)
    args = ap.parse_args()
    wd = args.workdir
    wd.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    vcf = make_vcf(wd, args.samples_per_pop, args.length, args.seed)
    sim_s = time.perf_counter() - t0
    rows, info = [], {}

    for t in sorted({1, args.threads}):
        out = wd / f"snpbag_t{t}.zarr"
        shutil.rmtree(out, ignore_errors=True)
        Path(str(out) + ".report.json").unlink(missing_ok=True)
        r = timed([str(BIN / "snpbag"), "convert", str(vcf), str(out), "--threads", str(t)], wd / f"snpbag_t{t}.log")
        rep = json.loads(Path(str(out) + ".report.json").read_text())
        info["variants"], info["samples"], info["vocab_sites"] = rep["variants"], rep["samples"], rep["vocab_sites"]
        size, files = dir_bytes(out)
        rows.append((f"snpbag convert --threads {t}", r, rep["bits_per_genotype"], size, files))
    snp_store = wd / f"snpbag_t{args.threads}.zarr"

    b2z = wd / "vcf2zarr.zarr"
    shutil.rmtree(b2z, ignore_errors=True)
    r = timed([str(BIN / "vcf2zarr"), "convert", "-f", "-Q", "-p", str(args.threads), str(vcf), str(b2z)],
              wd / "vcf2zarr.log")
    bg = zarr.open_group(str(b2z), mode="r")
    gt_bytes, _ = dir_bytes(b2z / "call_genotype")
    nv, ns = bg["call_genotype"].shape[:2]
    size, files = dir_bytes(b2z)
    rows.append((f"vcf2zarr convert -p {args.threads} (bio2zarr default chunks "
                 f"{bg['call_genotype'].chunks[0]}x{bg['call_genotype'].chunks[1]})",
                 r, round(8 * gt_bytes / (nv * ns), 4), size, files))

    prefix = wd / "plink2"
    r = timed(["plink2", "--vcf", str(vcf), "--make-pgen", "--threads", str(args.threads), "--out", str(prefix)],
              wd / "plink2.log")
    pgen = prefix.with_suffix(".pgen").stat().st_size
    size = sum(prefix.with_suffix(s).stat().st_size for s in (".pgen", ".pvar", ".psam"))
    rows.append((f"plink2 --make-pgen --threads {args.threads}", r,
                 round(8 * pgen / (info["variants"] * info["samples"]), 4), size, 3))

    # --- one sample's genotypes at a whole tile ------------------------------------------
    from snpbag.store.genotypes import open_store

    st = open_store(snp_store)
    voc = st.vocab
    c = int(np.argmax(voc.tile_stop - voc.tile_start))
    variants = voc.variant[voc.tile_sites(c)]
    rng = np.random.default_rng(0)
    samples = rng.choice(st.n_samples, size=min(args.reads, st.n_samples), replace=False)
    reads = []
    t_api = []
    for s in samples:
        t1 = time.perf_counter()
        st.read_haplotypes(c, [int(s)])
        t_api.append(time.perf_counter() - t1)
    reads.append(("snpbag (8192 x 16 chunks in 8192 x 2048 shards), read_haplotypes",
                  round(1000 * float(np.median(t_api)), 1), dir_bytes(snp_store / "call_genotype")))
    src = st.group["call_genotype"]
    reads.append(("snpbag layout, same chunk-by-chunk reader as the rows below", tile_read_ms(src, variants, samples),
                  dir_bytes(snp_store / "call_genotype")))
    flat = wd / "unsharded.zarr"
    shutil.rmtree(flat, ignore_errors=True)
    rechunk(src, flat, (8192, 16, 2))
    reads.append(("same chunks, no sharding", tile_read_ms(zarr.open_array(str(flat / "call_genotype")),
                                                           variants, samples),
                  dir_bytes(flat / "call_genotype")))
    reads.append((f"vcf2zarr default ({bg['call_genotype'].chunks[0]} x {bg['call_genotype'].chunks[1]})",
                  tile_read_ms(bg["call_genotype"], variants, samples), dir_bytes(b2z / "call_genotype")))

    date = dt.date.today().isoformat()
    cmd = " ".join(["tools/bench/bench_convert.py", *sys.argv[1:]])
    print(f"\n## Conversion: snpbag convert vs vcf2zarr vs plink2 ({date})\n")
    print(f"Command: `.venv/bin/python {cmd}`. Machine: {platform.machine()} {os.cpu_count()}-core CPU VM, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, no GPU; other jobs "
          f"shared the 2 cores during the run (load average {os.getloadavg()[0]:.1f} at the end), so wall "
          "times are upper bounds; CPU seconds are the fairer comparison.")
    print(f"Input: snpbag.simulate.cohort, {info['samples']} samples x {args.length / 1e6:g} Mb, "
          f"{info['variants']} biallelic SNPs ({info['vocab_sites']} with MAF >= 0.01), bgzipped VCF "
          f"{vcf.stat().st_size / 2**20:.1f} MiB (simulation {sim_s:.0f} s).\n")
    print("| tool | wall s | CPU s (user+sys, all processes) | peak RSS MiB (largest process) "
          "| genotype bits / genotype | output MiB | files |")
    print("|---|---|---|---|---|---|---|")
    for name, r, bits, size, files in rows:
        print(f"| {name} | {r['seconds']} | {r['cpu_seconds']} | {r['peak_rss_mib']} | {bits} | "
              f"{size / 2**20:.1f} | {files} |")
    print(f"\nOne sample's genotypes at the {len(variants)} vocabulary sites of one tile "
          f"(spanning {variants[-1] - variants[0] + 1} variants), median of {len(samples)} random samples, "
          "page cache warm:\n")
    print("| layout | ms | call_genotype MiB | files |")
    print("|---|---|---|---|")
    for name, ms, (b, n) in reads:
        print(f"| {name} | {ms} | {b / 2**20:.1f} | {n} |")
    _results.write(args.json, command="bench_convert", results={
        "convert": [{"tool": name, "wall_s": r["seconds"], "cpu_s": r["cpu_seconds"], "peak_rss_mib": r["peak_rss_mib"],
                     "bits_per_genotype": bits, "output_mib": size / 2**20, "files": files}
                    for name, r, bits, size, files in rows],
        "window_read": [{"layout": name, "ms": ms, "call_genotype_mib": b / 2**20, "files": n}
                        for name, ms, (b, n) in reads],
    }, info={**info, "length": args.length, "vcf_mib": vcf.stat().st_size / 2**20, "window_sites": len(variants),
             "samples_timed": len(samples)})


if __name__ == "__main__":
    main()
