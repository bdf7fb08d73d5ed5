"""Time and peak memory of the sliding-window attention backends on CPU.

Each (backend, length) runs in a fresh subprocess so peak memory is its own. Peak is the
kernel's high-water mark (VmHWM), reset just before one cold call, minus the resident size at
that moment: the extra memory the attention needs on top of q, k, v. Times are medians of
``--repeats`` warm calls and include building the mask plan.

    .venv/bin/python tools/bench/bench_attention.py                 # the table in docs/benchmarks.md
    .venv/bin/python tools/bench/bench_attention.py --block-sizes 32 64 128 --backends local
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import _results

LENGTHS = (4096, 32768, 81920)
DENSE_MAX = 8192  # (L, L) scores: 4 heads x 32768^2 x 4 B = 17 GB would not fit
FLEX_CPU_MAX = 4096  # CPU flex is eager: it materialises (L, L) scores too, forward only


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _hwm_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def child(backend: str, L: int, *, heads: int, dim: int, window: int, block_size: int, repeats: int) -> dict:
    import warnings

    import torch

    from snpbag.model.attention import plan_attention

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    valid = torch.ones(1, L, dtype=torch.bool)
    grad = backend != "flex"  # torch has no CPU backward for flex attention
    q, k, v = (torch.randn(1, L, heads, dim, requires_grad=grad) for _ in range(3))

    def fwd():
        plan = plan_attention(valid, window=window, backend=backend, block_size=block_size)
        with torch.no_grad():
            return plan(q, k, v)[0]

    def fwd_bwd():
        plan = plan_attention(valid, window=window, backend=backend, block_size=block_size)
        out, _ = plan(q, k, v)
        out.sum().backward()
        q.grad = k.grad = v.grad = None

    res = {"backend": backend, "L": L, "block_size": block_size}
    # memory first, on cold calls (a warm allocator would hide part of the peak)
    for name, fn in (("fwd", fwd), ("fwd_bwd", fwd_bwd if grad else None)):
        if fn is None:
            continue
        base = _rss_kib()
        _reset_hwm()
        fn()
        res[f"{name}_peak_mib"] = (_hwm_kib() - base) / 1024
    for name, fn in (("fwd", fwd), ("fwd_bwd", fwd_bwd if grad else None)):
        if fn is None:
            continue
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        res[f"{name}_s"] = statistics.median(times)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", nargs="+", default=["dense", "local", "flex"])
    p.add_argument("--lengths", nargs="+", type=int, default=list(LENGTHS))
    p.add_argument("--block-sizes", nargs="+", type=int, default=[128])
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dim", type=int, default=16, help="head dimension")
    p.add_argument("--window", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", help=argparse.SUPPRESS)
    _results.add_json_option(p)
    a = p.parse_args()
    if a.child:
        import torch

        torch.set_num_threads(a.threads)
        backend, L, bs = a.child.split(",")
        r = child(backend, int(L), heads=a.heads, dim=a.dim, window=a.window, block_size=int(bs), repeats=a.repeats)
        print(json.dumps(r))
        return
    # a fixed mmap threshold returns freed buffers to the OS at once, so RSS tracks live tensors
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "OMP_WAIT_POLICY": "passive",
           "MALLOC_MMAP_THRESHOLD_": "65536"}
    print(f"heads={a.heads} head_dim={a.dim} window={a.window} batch=1 threads={a.threads} float32 CPU")
    print("| backend | block | tokens | fwd s | fwd peak MiB | fwd+bwd s | fwd+bwd peak MiB |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for backend in a.backends:
        for bs in a.block_sizes if backend in ("local", "flex") else [a.block_sizes[0]]:
            for L in a.lengths:
                if (backend == "dense" and L > DENSE_MAX) or (backend == "flex" and L > FLEX_CPU_MAX):
                    print(f"| {backend} | {bs} | {L} | - | does not fit | - | - |")
                    rows.append({"backend": backend, "block_size": bs, "L": L, "note": "does not fit"})
                    continue
                cmd = [sys.executable, __file__, "--child", f"{backend},{L},{bs}", "--heads", str(a.heads),
                       "--dim", str(a.dim), "--window", str(a.window), "--repeats", str(a.repeats),
                       "--threads", str(a.threads)]
                out = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if out.returncode:
                    print(f"| {backend} | {bs} | {L} | failed: {out.stderr.strip().splitlines()[-1][:80]} |")
                    rows.append({"backend": backend, "block_size": bs, "L": L, "note": "failed"})
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(r)
                fb = f"{r['fwd_bwd_s']:.3f} | {r['fwd_bwd_peak_mib']:.0f}" if "fwd_bwd_s" in r else "no CPU backward | -"
                print(f"| {backend} | {bs} | {L} | {r['fwd_s']:.3f} | {r['fwd_peak_mib']:.0f} | {fb} |", flush=True)
    _results.write(a.json, command="bench_attention", results={"attention": rows},
                   info={"heads": a.heads, "head_dim": a.dim, "window": a.window, "threads": a.threads, "batch": 1})


if __name__ == "__main__":
    main()
