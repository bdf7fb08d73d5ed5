"""Peak resident memory of one training step (forward + backward) of a preset on CPU,
each length in a fresh subprocess, to show that memory grows linearly with sequence length.

Reports the process's peak RSS (VmHWM) over the step, and the part of it above the resident
size just before the step (model, optimizer-free, batch already built).

    .venv/bin/python tools/bench/bench_memory.py                    # small preset, 8k/32k/80k
    .venv/bin/python tools/bench/bench_memory.py --preset tiny --lengths 8192 81920
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import _results


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def child(preset_name: str, L: int, *, backend: str, checkpointing: bool) -> dict:
    import numpy as np
    import torch

    from snpbag.data.batch import collate
    from snpbag.data.tokens import IGNORE_INDEX, MASK
    from snpbag.config import preset
    from snpbag.model import build_model

    torch.manual_seed(0)
    cfg = preset(preset_name, n_sites=L, backend=backend, activation_checkpointing=checkpointing)
    model = build_model(cfg).train()
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, L)
    masked = rng.random(L) < 0.9
    batch = collate([dict(
        genotype=np.where(masked, MASK, truth), site_index=np.arange(L),
        position=np.cumsum(rng.integers(1, 500, L)), target=np.where(masked, truth, IGNORE_INDEX),
        tile=0, sample=0, offset=0,
    )])
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark
    t = time.perf_counter()
    out = model(batch)
    out.loss.backward()
    elapsed = time.perf_counter() - t
    peak = _status_kib("VmHWM")
    return {"L": L, "peak_mib": peak / 1024, "step_mib": (peak - before) / 1024, "seconds": elapsed,
            "params": sum(p.numel() for p in model.parameters())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--lengths", nargs="+", type=int, default=[8192, 32768, 81920])
    p.add_argument("--backend", default="local")
    p.add_argument("--checkpointing", action="store_true", help="activation checkpointing per block")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    _results.add_json_option(p)
    a = p.parse_args()
    if a.child:
        import torch

        torch.set_num_threads(a.threads)
        print(json.dumps(child(a.preset, a.child, backend=a.backend, checkpointing=a.checkpointing)))
        return
    # a fixed mmap threshold returns freed buffers to the OS at once, so RSS tracks live tensors
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "OMP_WAIT_POLICY": "passive",
           "MALLOC_MMAP_THRESHOLD_": "65536"}
    print(f"preset={a.preset} backend={a.backend} checkpointing={a.checkpointing} batch=1 threads={a.threads}")
    print("| tokens | peak RSS MiB | step MiB (above pre-step RSS) | step MiB per 1k tokens | fwd+bwd s |")
    print("|---|---|---|---|---|")
    rows = []
    for L in a.lengths:
        cmd = [sys.executable, __file__, "--preset", a.preset, "--backend", a.backend, "--threads", str(a.threads),
               "--child", str(L)] + (["--checkpointing"] if a.checkpointing else [])
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode:
            print(f"| {L} | failed: {out.stderr.strip().splitlines()[-1][:100]} |")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"preset": a.preset, "checkpointing": a.checkpointing, "tokens": L, "peak_rss_mib": r["peak_mib"],
                     "step_mib": r["step_mib"], "step_mib_per_1k_tokens": 1024 * r["step_mib"] / L,
                     "fwd_bwd_s": r["seconds"], "params": r["params"]})
        print(f"| {L} | {r['peak_mib']:.0f} | {r['step_mib']:.0f} | {1024 * r['step_mib'] / L:.1f} | {r['seconds']:.2f} |",
              flush=True)
    _results.write(a.json, command="bench_memory", results={"memory": rows},
                   info={"backend": a.backend, "threads": a.threads, "batch": 1})


if __name__ == "__main__":
    main()
