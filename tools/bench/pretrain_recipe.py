"""Pretraining-recipe sweeps on CPU: masked accuracy per MAF bin at a fixed 90 % masking,
next to the allele-frequency baseline, every ``--eval-every`` steps.

A bare training loop (AdamW, warm-up + cosine, clipping 1.0) over the real
GenotypeDataModule and model builders, so one recipe change (augmentation, masking range,
a model field) can be compared in minutes without Lightning's overheads. Its last results
are in docs/history/benchmarks-2026.md ("Pretraining recipe on the demo cohort"). Use
`snpbag train` for real runs: this loop has no checkpoints or loggers.

    snpbag demo --out demo_out            # or any store made by `snpbag convert`
    .venv/bin/python tools/bench/pretrain_recipe.py --store demo_out/cohort.zarr --steps 1000 \
        --augment --generations 100 --tag aug100
    .venv/bin/python tools/bench/pretrain_recipe.py --steps 1000 --set site_dim=32 window=256

Each evaluation line: step, smoothed training loss, validation loss, masked accuracy, AF
baseline accuracy, gain, then the gain per MAF bin 1-2 / 2-5 / 5-10 / 10-20 / 20-50 %.
``--ema D ...`` adds a line per decay for weight averages (snpbag.train.ema) evaluated at the
same steps; ``--init-seed`` redraws only the initial weights (data, crops and masks keep
``--seed``); ``--save F.pt`` writes the final weights (and ``F-emaD.pt`` the averages) for
tools/bench/rare_calibration.py.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

import _results

EDGES = [0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.51]
BIN_LABELS = ["1-2%", "2-5%", "5-10%", "10-20%", "20-50%"]  # EDGES[1:] as printed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", default="demo_out/cohort.zarr")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="ModelConfig overrides")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--val-seq-len", type=int, default=None, help="validation tile length (default --seq-len)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--min-rate", type=float, default=0.85)
    p.add_argument("--max-rate", type=float, default=0.99)
    p.add_argument("--val-rate", type=float, default=0.9)
    p.add_argument("--augment", action="store_true")
    p.add_argument("--generations", type=float, default=8.0)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--site-scale", type=float, default=None,
                   help="override snpbag.model.embedding.SITE_SCALE (the per-site tables' multiplier)")
    p.add_argument("--tag", default="run")
    p.add_argument("--ema", type=float, nargs="*", default=[],
                   help="also evaluate exponential moving averages of the weights with these decays (snpbag.train.ema)")
    p.add_argument("--init-seed", type=int, default=None,
                   help="seed of the model's initial weights only (default: --seed; data and masks keep --seed)")
    p.add_argument("--save", default=None, help="write the final model's state dict here (torch.save)")
    _results.add_json_option(p)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    from snpbag.config import AugmentConfig, MaskingConfig, preset
    from snpbag.data.datamodule import GenotypeDataModule
    from snpbag.data.tokens import IGNORE_INDEX
    from snpbag.model.builders import build_model

    if a.site_scale is not None:
        import snpbag.model.embedding as embedding

        embedding.SITE_SCALE = a.site_scale  # read at call time by reset_tables and forward
    base_cfg = preset(a.preset)
    over = {}
    for kv in a.set:
        k, v = kv.split("=", 1)
        over[k] = type(getattr(base_cfg, k))(v)
    dm = GenotypeDataModule(
        a.store, batch_size=a.batch_size, seq_len=a.seq_len, val_seq_len=a.val_seq_len, val_fraction=0.1, seed=a.seed,
        masking=MaskingConfig(min_rate=a.min_rate, max_rate=a.max_rate),
        val_masking=MaskingConfig(min_rate=a.val_rate, max_rate=a.val_rate),
        augment=AugmentConfig(enabled=a.augment, generations=a.generations),
    )
    dm.setup("fit")
    vocab = dm.store.vocab
    if a.init_seed is not None:
        torch.manual_seed(a.init_seed)
    model = build_model(preset(a.preset, n_sites=vocab.n_sites, **over), site_af=vocab.af)
    emas = []
    if a.ema:
        from snpbag.train.ema import WeightAverage

        emas = [WeightAverage(model, decay=d) for d in a.ema]
    af = torch.as_tensor(np.nan_to_num(vocab.af), dtype=torch.float32)
    base_guess = torch.stack([(1 - af) ** 2, 2 * af * (1 - af), af**2], -1).argmax(-1)
    maf = np.minimum(af.numpy(), 1 - af.numpy())
    bin_of = torch.as_tensor(np.digitize(maf, EDGES) - 1)
    nb = len(EDGES) - 1

    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / a.warmup) * 0.5 * (1 + np.cos(np.pi * min(s, a.steps) / a.steps)))

    def evaluate():
        model.eval()
        hit, hit_base, n = np.zeros(nb), np.zeros(nb), np.zeros(nb)
        loss, batches = 0.0, 0
        with torch.no_grad():
            for b in dm.val_dataloader():
                out = model(b)
                scored = b.target != IGNORE_INDEX
                loss, batches = loss + out.loss.item(), batches + 1
                bins = bin_of[b.site_index]
                ok = (out.logits.argmax(-1) == b.target) & scored
                ok_base = (base_guess[b.site_index] == b.target) & scored
                for k in range(nb):
                    in_bin = bins == k
                    hit[k] += (ok & in_bin).sum().item()
                    hit_base[k] += (ok_base & in_bin).sum().item()
                    n[k] += (scored & in_bin).sum().item()
        model.train()
        return loss / batches, hit.sum() / n.sum(), hit_base.sum() / n.sum(), (hit - hit_base) / np.maximum(n, 1)

    n_params = sum(x.numel() for x in model.parameters())
    print(f"# {a.tag}: preset {a.preset} {over} params {n_params:,} lr {a.lr} seq {a.seq_len} batch "
          f"{a.batch_size} masking {a.min_rate}-{a.max_rate} augment {a.augment} ({a.generations:g}/M)", flush=True)
    t0, it, smooth, epoch = time.time(), iter(dm.train_dataloader()), None, 0
    rows = []

    def record(weights, step, vloss, acc, base, gain):
        rows.append({"tag": a.tag, "weights": weights, "step": step, "train_loss": smooth, "val_loss": vloss,
                     "accuracy": acc, "af_baseline": base, "gain": acc - base, **dict(zip(BIN_LABELS, gain[1:]))})

    for step in range(1, a.steps + 1):
        try:
            b = next(it)
        except StopIteration:
            # a new epoch: new order, crops, masks and synthetic genomes (as Lightning does
            # through the loader's sampler). Before 2026-11-22 this loop did not advance the
            # epoch and replayed epoch 0's ~100 batches: see docs/history/benchmarks-2026.md.
            epoch += 1
            dm.set_epoch(epoch)
            it = iter(dm.train_dataloader())
            b = next(it)
        out = model(b)
        opt.zero_grad()
        out.loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        for ema in emas:
            ema.update(model)
        smooth = out.loss.item() if smooth is None else 0.98 * smooth + 0.02 * out.loss.item()
        if step % a.eval_every == 0 or step == a.steps:
            vloss, acc, base, gain = evaluate()
            print(f"{a.tag} step {step} train {smooth:.4f} val {vloss:.4f} acc {acc:.4f} base {base:.4f} "
                  f"gain {acc - base:+.4f} bins " + " ".join(f"{g:+.4f}" for g in gain[1:])
                  + f" t {time.time() - t0:.0f}s", flush=True)
            record("live", step, vloss, acc, base, gain)
            for ema in emas:
                with ema.applied(model):
                    vloss, acc, base, gain = evaluate()
                print(f"{a.tag}-ema{ema.decay:g} step {step} train {smooth:.4f} val {vloss:.4f} acc {acc:.4f} base {base:.4f} "
                      f"gain {acc - base:+.4f} bins " + " ".join(f"{g:+.4f}" for g in gain[1:]), flush=True)
                record(f"ema{ema.decay:g}", step, vloss, acc, base, gain)
    _results.write(a.json, command="pretrain_recipe", results={"recipe": rows},
                   info={"preset": a.preset, "overrides": " ".join(a.set), "params": n_params, "seconds": time.time() - t0})
    if a.save:
        torch.save({"state_dict": model.state_dict(), "config": vars(a), "model_over": over}, a.save)
        for ema in emas:
            with ema.applied(model):
                torch.save({"state_dict": model.state_dict(), "config": vars(a), "model_over": over},
                           a.save.replace(".pt", "") + f"-ema{ema.decay:g}.pt")


if __name__ == "__main__":
    main()
