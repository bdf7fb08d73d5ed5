"""Training-loader throughput (genotype tokens/s) against what one H100 would consume.

Simulates a cohort (snpbag.simulate.cohort), converts it (snpbag.store.convert), then runs the
training DataLoader (random crops, 85-99 % random masking, shuffle buffer, collate to Batch)
for each sequence length x num_workers and reports steady-state tokens/s (after the first
batch) and the start-up time (first batch, includes worker start and the first reads).

The GPU side is arithmetic, not a measurement: training FLOPs per token of the encoder
(snpbag.model.flops) at an assumed model-FLOPs utilisation of 989 TFLOP/s dense bf16
(H100 SXM).

    .venv/bin/python tools/bench/bench_loader.py --workdir /tmp/bench_loader
    .venv/bin/python tools/bench/bench_loader.py --seq-lens 8192 --workers 0 2 --seconds 5

Prints a Markdown section and writes the results as JSON (``--json``; tools/bench/_results.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import _results

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

H100_BF16_DENSE = 989e12


def gpu_tokens_per_s(*, n_layers: int, d_model: int, d_ff: int, window: int, mfu: float) -> tuple[float, float, float]:
    """(weight parameters, training FLOPs per token, tokens/s) of one H100 at ``mfu``."""
    from snpbag.model import flops as flops_model  # imports torch: after OMP_NUM_THREADS is set

    params = flops_model.encoder_matmul_params(n_layers=n_layers, d_model=d_model, d_ff=d_ff)
    flops = flops_model.training_flops_per_token(n_layers=n_layers, d_model=d_model, d_ff=d_ff, window=window)
    return params, flops, mfu * H100_BF16_DENSE / flops


def make_store(workdir: Path, *, samples_per_pop: int, length: int, seed: int, tile_len: int) -> Path:
    """The simulated cohort converted with ``tile_len`` sites per tile (cached)."""
    from snpbag.store.convert import convert
    from snpbag.simulate.cohort import simulate

    store = workdir / f"cohort_{tile_len}.zarr"
    if store.exists():
        return store
    sim = workdir / "sim"
    if not (sim / "cohort.vcf.gz").exists():
        t = time.perf_counter()
        simulate(sim, samples_per_pop=samples_per_pop, length=length, seed=seed)
        print(f"simulated in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    t = time.perf_counter()
    convert(sim / "cohort.vcf.gz", store, min_maf=0.01, tile_len=tile_len, threads=2)
    print(f"converted in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return store


def tile_len_for(seq_len: int) -> int:
    """Sequences up to 8192 sites are cropped from 8192-site tiles (many items per epoch, as
    in a biobank, so epoch turnover does not dominate); longer ones from 81,920-site tiles."""
    return 8192 if seq_len <= 8192 else 81920


def measure(store: Path, *, seq_len: int, workers: int, batch_size: int, seconds: float, augment: bool) -> dict:
    """Iterate epochs until ``seconds`` of steady state have passed (at least one epoch)."""
    import torch

    from snpbag.config import AugmentConfig, MaskingConfig
    from snpbag.data.datamodule import make_loader
    from snpbag.data.dataset import TileDataset

    torch.set_num_threads(1)
    ds = TileDataset(store, seq_len=seq_len, masking=MaskingConfig(), seed=0, batch_size=batch_size,
                     augment=AugmentConfig(enabled=augment, panel_size=256))
    loader = make_loader(ds, num_workers=workers, persistent_workers=workers > 0)
    t0 = time.perf_counter()
    first = None
    tokens = batches = epoch = 0
    done = False
    while not done:
        ds.set_epoch(epoch)
        for b in loader:
            n = int(b.valid.sum())
            if first is None:
                first = time.perf_counter()
                continue
            tokens += n
            batches += 1
            if time.perf_counter() - first >= seconds:
                done = True
                break
        epoch += 1
    dt_ = time.perf_counter() - first
    del loader
    return dict(seq_len=seq_len, workers=workers, augment=augment, batch_size=batch_size,
                block_samples=ds.block_samples, buffer_size=ds.buffer_size, tile_len=tile_len_for(seq_len),
                tokens=tokens, batches=batches, epochs=epoch, startup_s=first - t0, seconds=dt_,
                tokens_per_s=tokens / dt_)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench_loader"))
    p.add_argument("--samples-per-pop", type=int, default=200)
    p.add_argument("--length", type=int, default=50_000_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--seq-lens", type=int, nargs="+", default=[1024, 8192, 81920])
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tokens-per-batch", type=int, default=65536,
                   help="batch size = max(1, this // seq_len), as a GPU run would size its batches")
    p.add_argument("--seconds", type=float, default=10.0, help="steady-state time per configuration")
    p.add_argument("--augment-seq-len", type=int, default=8192,
                   help="also time augmentation at this sequence length (0: skip)")
    p.add_argument("--mfu", type=float, default=0.4)
    _results.add_json_option(p)
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)

    from snpbag.store.genotypes import open_store

    stores = {}
    for w in args.seq_lens + ([args.augment_seq_len] if args.augment_seq_len else []):
        cl = tile_len_for(w)
        stores[cl] = make_store(args.workdir, samples_per_pop=args.samples_per_pop, length=args.length,
                                seed=args.seed, tile_len=cl)
    st = open_store(stores[max(stores)])
    rows = []
    for w in args.seq_lens:
        for k in args.workers:
            r = measure(stores[tile_len_for(w)], seq_len=w, workers=k,
                        batch_size=max(1, args.tokens_per_batch // w), seconds=args.seconds, augment=False)
            print(json.dumps(r), file=sys.stderr)
            rows.append(r)
    if args.augment_seq_len:
        for k in args.workers:
            r = measure(stores[tile_len_for(args.augment_seq_len)], seq_len=args.augment_seq_len, workers=k,
                        batch_size=max(1, args.tokens_per_batch // args.augment_seq_len), seconds=args.seconds,
                        augment=True)
            print(json.dumps(r), file=sys.stderr)
            rows.append(r)
    try:
        from snpbag.config import preset

        cfg = preset("base", n_sites=1)
        arch = dict(n_layers=cfg.n_layers, d_model=cfg.d_model, d_ff=cfg.d_ff, window=cfg.window)
    except Exception:  # the model package is optional for this benchmark
        arch = dict(n_layers=16, d_model=512, d_ff=2048, window=128)
    params, flops, gpu = gpu_tokens_per_s(**arch, mfu=args.mfu)

    cmd = "    .venv/bin/python tools/bench/bench_loader.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"\n## Training loader throughput (`tools/bench/bench_loader.py`, {dt.date.today().isoformat()})\n")
    print(f"```\n{cmd.strip()}\n```\n")
    print(f"Machine: 2-core CPU VM, 24 GiB, no GPU ({platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}). Store: simulated cohort ({st.n_samples} samples, "
          f"{st.n_variants} variants, {st.vocab.n_sites} vocabulary sites with MAF >= 0.01), `snpbag convert` "
          "default chunking, tiles of 8192 sites for sequences up to 8192 sites and of 81,920 sites above. "
          "Loader: training mode (one random crop per sample x tile, 85-99 % random masking, default "
          "read blocks and shuffle buffer), collate to `Batch`, batch size = "
          f"{args.tokens_per_batch} // seq_len. "
          "Tokens/s is the steady state after the first batch; start-up is the time to the first batch "
          "(worker start + first reads).\n")
    print("| seq_len (sites) | batch | block / buffer | augment | workers | tokens/s | start-up (s) "
          "| batches timed |")
    print("|---:|---:|---:|:---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['seq_len']} | {r['batch_size']} | {r['block_samples']} / {r['buffer_size']} | "
              f"{'yes' if r['augment'] else 'no'} | {r['workers']} | {r['tokens_per_s'] / 1e6:.2f} M | "
              f"{r['startup_s']:.2f} | {r['batches']} |")
    print(f"\nOne H100 training the base preset ({arch['n_layers']} layers x {arch['d_model']}, d_ff "
          f"{arch['d_ff']}, attention window {arch['window']}): {params / 1e6:.1f} M weight parameters, "
          f"6 x N + 12 x layers x d x window = {flops / 1e6:.0f} MFLOP per token; at an assumed "
          f"{args.mfu:.0%} MFU of 989 TFLOP/s (dense bf16) it consumes **{gpu / 1e6:.2f} M tokens/s** "
          "(arithmetic, not measured).\n")
    _results.write(args.json, command="bench_loader", argv=argv, results={"loader": rows}, info={
        "samples": st.n_samples, "variants": st.n_variants, "vocab_sites": st.vocab.n_sites,
        "tokens_per_batch": args.tokens_per_batch, "gpu_arithmetic_tokens_per_s": gpu, "gpu_flops_per_token": flops,
        "gpu_weight_params": params, "gpu_mfu_assumed": args.mfu})


if __name__ == "__main__":
    main()
