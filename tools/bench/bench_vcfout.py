"""Time the imputed-VCF writer: sample-major batches in, site-major bgzipped VCF out.

    .venv/bin/python tools/bench/bench_vcfout.py --sites 10000 --samples 1000 --batch 16

Reports the time to buffer all batches (quantise + transpose into the on-disk buffer)
and the time to write VCF + tabix index + info file, with output sizes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from snpbag.inference.vcfout import ImputedVcfWriter, OutputSites

import _results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=1_000)
    ap.add_argument("--batch", type=int, default=16, help="samples per add() call, as --batch-size")
    ap.add_argument("--typed", type=float, default=0.05, help="fraction of sites typed in the input")
    ap.add_argument("--fmt", default="GT,DS,GP")
    _results.add_json_option(ap)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    R, N = args.sites, args.samples
    typed_rows = np.flatnonzero(rng.random(R) < args.typed)
    sites = OutputSites(
        chrom=np.full(R, "chr22", object), pos=np.arange(1, R + 1) * 100, id=np.full(R, ".", object),
        ref=np.full(R, "A", object), alt=np.full(R, "G", object), swapped=rng.random(R) < 0.01,
        typed_rows=typed_rows, typed_calls=rng.integers(0, 2, size=(typed_rows.size, N, 2)).astype(np.int8),
    )
    samples = [f"S{i}" for i in range(N)]
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "bench.vcf.gz"
        t0 = time.perf_counter()
        w = ImputedVcfWriter(out, sites, samples, fmt=args.fmt, command="bench")
        gp_all = rng.dirichlet([0.5, 0.3, 0.2], size=(args.batch, R)).astype(np.float32)
        for s0 in range(0, N, args.batch):
            b = min(args.batch, N - s0)
            w.add(gp_all[:b], samples=slice(s0, s0 + b))
        t1 = time.perf_counter()
        summary = w.close()
        t2 = time.perf_counter()
        size = out.stat().st_size
    print(f"sites={R} samples={N} batch={args.batch} fmt={args.fmt} typed={typed_rows.size}")
    print(f"buffer: {t1 - t0:.2f} s   write vcf+tbi+info: {t2 - t1:.2f} s   total: {t2 - t0:.2f} s")
    print(f"genotypes/s (write): {R * N / (t2 - t1):,.0f}   vcf.gz: {size / 2**20:.1f} MiB   "
          f"written sites: {summary.n_written}")
    _results.write(args.json, command="bench_vcfout", results={"vcfout": [
        {"step": "buffer (round GP, transpose)", "seconds": t1 - t0},
        {"step": "write VCF + tabix + info", "seconds": t2 - t1, "genotypes_per_s": R * N / (t2 - t1)},
        {"step": "total", "seconds": t2 - t0, "vcf_mib": size / 2**20},
    ]}, info={"sites": R, "samples": N, "batch": args.batch, "fmt": args.fmt, "typed_sites": typed_rows.size,
              "written_sites": summary.n_written})


if __name__ == "__main__":
    main()
