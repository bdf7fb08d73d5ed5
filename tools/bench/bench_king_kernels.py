"""Time ``snpbag king``'s two pair-count kernels on the same variants: popcounts vs int8 GEMMs.

Reads a store (or VCF), keeps the variants that ``pair_counts`` would send to a kernel
(complete, more minor-allele carrier pairs than the carrier-list limit), and times on
them, in this process: bit-plane packing plus :func:`snpbag.kinship.popcount.count_complete`
(numba; compiled or loaded from its cache on a first warm-up call), and the two int8 GEMMs
``H·H'`` and ``S·S'`` over the GEMM tiles (torch._int_mm). CPU time (process_time) is
reported, best of ``--repeat``; the counts are checked to agree.

Usage::

    taskset -c 0 python tools/bench/bench_king_kernels.py /tmp/bench_king/cohort.zarr --threads 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import _results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="carrier-pair limit (default: the popcount cost model)")
    _results.add_json_option(ap)
    args = ap.parse_args()

    from snpbag.kinship import counts, gemm, popcount
    from snpbag.kinship.source import GenotypeSource

    src = GenotypeSource(args.input)
    n = src.n_samples
    pairs = n * (n - 1) // 2
    limit = args.limit if args.limit is not None else pairs // counts.POPCOUNT_PAIR_CELLS
    acc = gemm.GemmAccumulator(rows=(0, n), chunk=8192, block_size=2048, device="cpu", threads=1)
    d = np.concatenate([c.dense for g in src.dosages(n, chunk=8192)
                        if (c := counts._prepare(g, acc=acc, pair_limit=limit)).dense is not None])
    v = d.shape[0]
    print(f"{n} samples, {v} kernel variants (carrier-pair limit {limit}), {pairs} pairs, {args.threads} thread(s)")

    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(args.threads) if args.threads > 1 else None
    ptiles = popcount.tiles(0, n, popcount.BAND)

    def run_popcount():
        hh, ss = np.zeros((n, n), np.int32), np.zeros((n, n), np.int32)
        for a in range(0, v, 8192):
            popcount.count_complete(popcount.pack(d[a:a + 8192], missing=False), hh, ss, r0=0, tiles=ptiles,
                                    pool=pool)
        return hh

    import torch

    torch.set_num_threads(args.threads)
    gtiles = gemm.tiles(0, n, gemm.CPU_BAND, 2048)

    def run_gemm():
        hh, ss = torch.zeros((n, n), dtype=torch.int32), torch.zeros((n, n), dtype=torch.int32)
        for a in range(0, v, 8192):
            c = d[a:a + 8192]
            h, s = torch.from_numpy((c == 1).view(np.int8)), torch.from_numpy(c - np.int8(1))
            for i0, i1, j0, j1 in gtiles:
                hh[i0:i1, j0:j1] += gemm.matmul(h[:, i0:i1], h[:, j0:j1], int8=True)
                ss[i0:i1, j0:j1] += gemm.matmul(s[:, i0:i1], s[:, j0:j1], int8=True)
        return hh.numpy()

    got, rows = {}, []
    for name, fn in (("popcount (numba)", run_popcount), ("int8 GEMM (torch._int_mm)", run_gemm)):
        t = time.process_time()
        got[name] = fn()
        first = time.process_time() - t
        best = min(_cpu(fn) for _ in range(args.repeat))
        print(f"| {name} | {first:.3f} | {best:.3f} | {v * pairs / best / 1e9:.0f} |")
        rows.append({"kernel": name, "variants": v, "first_call_cpu_s": first, "best_cpu_s": best,
                     "g_variant_pairs_per_s": v * pairs / best / 1e9})
    il = np.tril_indices(n, -1)
    a, b = got.values()
    assert np.array_equal(a[il], b[il]), "HETHET differs between the kernels"
    print("HETHET identical in both kernels")
    _results.write(args.json, command="bench_king_kernels", results={"kernels": rows},
                   info={"samples": n, "pairs": pairs, "carrier_pair_limit": limit, "threads": args.threads,
                         "hethet_identical": True})


def _cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


if __name__ == "__main__":
    main()
