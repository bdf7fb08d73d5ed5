"""Why the model does or does not beat the allele-frequency baseline at rare sites: per MAF
bin, how often the model calls a non-modal genotype (one the baseline never calls), how
often such a call is right, and the reliability curve of the model's P(carrier) (predicted
probability of any genotype other than the baseline's, binned, against how often it was
observed).

    .venv/bin/python tools/bench/pretrain_recipe.py --store S --steps 1000 --augment \
        --generations 100 --min-rate 0.5 --save /tmp/ref.pt
    .venv/bin/python tools/bench/rare_calibration.py --store S --weights /tmp/ref.pt

``--weights`` takes a state dict saved by pretrain_recipe.py (``--save``) or a model
directory from ``snpbag export``. Validation samples and masks are those of the recipe
loop (val_fraction 0.1, seed 0, 90 % masked); ``--train-rows N`` also scores N training
genomes (drawn at random) under the same masking, to compare calibration on seen and unseen
genomes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import _results

EDGES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
P_EDGES = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0001)


def collect(model, loader, site_guess):
    """(site, target, p(3), pred) for every scored position of ``loader``."""
    from snpbag.data.tokens import IGNORE_INDEX

    sites, ys, probs = [], [], []
    model.eval()
    with torch.no_grad():
        for b in loader:
            out = model(b)
            scored = b.target != IGNORE_INDEX
            sites.append(b.site_index[scored])
            ys.append(b.target[scored])
            probs.append(out.logits[scored].float().softmax(-1))
    return torch.cat(sites).numpy(), torch.cat(ys).numpy(), torch.cat(probs).numpy()


def report(name, site, y, prob, af, guess, bins, labels, out, tables):
    pred = prob.argmax(-1)
    base = guess[site]
    b = bins[site]
    p_carrier = 1.0 - np.take_along_axis(prob, base[:, None], 1)[:, 0]
    carrier = y != base
    out.append(f"## {name}: {y.size:,} scored positions")
    out.append("bin | n | carriers | base acc | model acc | gain | non-modal calls | right | wrong | "
               "precision | recall | mean P(carrier) | model NLL | HWE NLL")
    for k, lab in enumerate(labels):
        m = b == k
        if not m.any():
            continue
        nm = m & (pred != base)
        right = (nm & (pred == y)).sum()
        pk = np.clip(af[site[m]].astype(np.float64), 1e-4, 1 - 1e-4)
        hwe = np.stack([(1 - pk) ** 2, 2 * pk * (1 - pk), pk**2], -1)
        hnll = -np.log(hwe[np.arange(m.sum()), y[m]]).mean()
        mnll = -np.log(np.clip(prob[m][np.arange(m.sum()), y[m]], 1e-12, 1)).mean()
        tables.setdefault("bins", []).append({
            "genomes": name, "maf_bin": lab, "n": int(m.sum()), "carriers": carrier[m].mean(),
            "base_acc": (base[m] == y[m]).mean(), "model_acc": (pred[m] == y[m]).mean(), "calls": int(nm.sum()),
            "right": int(right), "precision": right / max(nm.sum(), 1), "model_nll": mnll, "hwe_nll": hnll})
        out.append(
            f"{lab} | {m.sum():,} | {carrier[m].mean():.4f} | {(base[m] == y[m]).mean():.4f} | "
            f"{(pred[m] == y[m]).mean():.4f} | {(pred[m] == y[m]).mean() - (base[m] == y[m]).mean():+.4f} | "
            f"{nm.sum():,} ({nm.sum() / m.sum():.4f}) | {right:,} | {nm.sum() - right:,} | "
            f"{right / max(nm.sum(), 1):.3f} | {(nm & carrier & (pred == y)).sum() / max((m & carrier).sum(), 1):.3f} | "
            f"{p_carrier[m].mean():.4f} | {mnll:.4f} | {hnll:.4f}")
    for k in (0, 1):
        m = b == k
        out.append(f"reliability of P(carrier), {labels[k]} ({name}): predicted range | n | mean predicted | observed")
        idx = np.digitize(p_carrier[m], P_EDGES) - 1
        for j in range(len(P_EDGES) - 1):
            s = idx == j
            if s.any():
                tables.setdefault("reliability", []).append({
                    "genomes": name, "maf_bin": labels[k], "predicted": f"{P_EDGES[j]:.2f}-{min(P_EDGES[j + 1], 1):.2f}",
                    "n": int(s.sum()), "mean_predicted": p_carrier[m][s].mean(), "observed": carrier[m][s].mean()})
                out.append(f"  {P_EDGES[j]:.2f}-{min(P_EDGES[j + 1], 1):.2f} | {s.sum():,} | "
                           f"{p_carrier[m][s].mean():.4f} | {carrier[m][s].mean():.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--val-seq-len", type=int, default=None, help="validation tile length (default --seq-len)")
    p.add_argument("--val-rate", type=float, default=0.9)
    p.add_argument("--train-rows", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dump", default=None, help="write the scored positions (npz) here")
    _results.add_json_option(p)
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    from snpbag.config import MaskingConfig, preset
    from snpbag.data.datamodule import GenotypeDataModule
    from snpbag.eval import metrics as em
    from snpbag.model.builders import build_model

    dm = GenotypeDataModule(a.store, batch_size=16, seq_len=a.seq_len, val_seq_len=a.val_seq_len,
                            val_fraction=0.1, seed=a.seed,
                            masking=MaskingConfig(min_rate=a.val_rate, max_rate=a.val_rate))
    dm.setup("fit")
    vocab = dm.store.vocab
    if Path(a.weights).is_dir():
        from snpbag import modeldir

        model = modeldir.load_model(a.weights)
    else:
        ck = torch.load(a.weights, map_location="cpu", weights_only=False)
        model = build_model(preset(a.preset, n_sites=vocab.n_sites, **ck.get("model_over", {})), site_af=vocab.af)
        model.load_state_dict(ck["state_dict"])
    af = np.nan_to_num(np.asarray(vocab.af, dtype=np.float64))
    guess, _ = em.af_baseline(af)
    bins = em.maf_bin_index(np.minimum(af, 1 - af), EDGES)
    labels = em.maf_bin_labels(EDGES)
    out: list[str] = []
    tables: dict[str, list[dict]] = {}
    site, y, prob = collect(model, dm.val_dataloader(), guess)
    report("validation", site, y, prob, af, guess, bins, labels, out, tables)
    if a.dump:
        np.savez(a.dump, site=site, y=y, prob=prob)
    if a.train_rows:
        train, _ = dm.split()
        rows = np.sort(np.random.default_rng(a.seed).choice(train, a.train_rows, replace=False))
        ds = dm._dataset(rows, training=False, seq_len=dm.val_seq_len, masking=dm.val_masking)
        site, y, prob = collect(model, dm._loader(ds), guess)
        report(f"{a.train_rows} training genomes", site, y, prob, af, guess, bins, labels, out, tables)
    print("\n".join(out))
    _results.write(a.json, command="rare_calibration", results=tables, info={"weights": a.weights, "store": a.store})


if __name__ == "__main__":
    main()
