"""What the visible genotypes say about hidden ones at 90 % masking, without learning: a
haplotype-copying predictor on the same validation genomes and masks as
tools/bench/pretrain_recipe.py, per MAF bin, next to the allele-frequency baseline.

For every held-out genome and hidden site, each training haplotype h (the 1,800 training
genomes' phased haplotypes, read from the store) is scored by the log-likelihood of the
genome's visible genotypes within +-W sites if one of its two haplotypes copied h and the
other is drawn from the site AF (P(g | h) = AF terms; an opposite homozygote costs
log 1e-3). A softmax over haplotypes gives P(copied haplotype carries ALT) = q; the
genotype distribution is (q, AF) combined for the two haplotypes, and its argmax is the
call. No switches within the span, no error model beyond the 1e-3: a lower bound on what
the data allow, not a competitor to Beagle.

    .venv/bin/python tools/bench/copy_ceiling.py --store demo_out/cohort.zarr --span 64
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import _results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", default="demo_out/cohort.zarr")
    p.add_argument("--span", type=int, default=64, help="visible sites counted within +-W sites")
    p.add_argument("--seq-len", type=int, default=512, help="validation tile length (masks as pretrain_recipe)")
    p.add_argument("--val-rate", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    _results.add_json_option(p)
    a = p.parse_args()
    torch.set_num_threads(1)

    from snpbag.config import MaskingConfig
    from snpbag.data.datamodule import GenotypeDataModule
    from snpbag.data.tokens import IGNORE_INDEX
    from snpbag.eval import metrics as em

    dm = GenotypeDataModule(a.store, batch_size=16, seq_len=a.seq_len, val_fraction=0.1, seed=a.seed,
                            masking=MaskingConfig(min_rate=a.val_rate, max_rate=a.val_rate))
    dm.setup("fit")
    store, vocab = dm.store, dm.store.vocab
    if store.n_tiles != 1:
        raise SystemExit("copy_ceiling handles one-tile stores (the demo's) only")
    S = vocab.n_sites
    train, val = dm.split()
    af = np.nan_to_num(np.asarray(vocab.af, dtype=np.float64))
    H = store.read_haplotypes(0, train).transpose(0, 2, 1).reshape(-1, S).astype(np.float32)  # (2n, S)
    row = {int(r): k for k, r in enumerate(val)}
    inp = np.full((len(val), S), 4, np.int64)
    tgt = np.full((len(val), S), IGNORE_INDEX, np.int64)
    for b in dm.val_dataloader():
        for j in range(b.genotype.shape[0]):
            v = b.valid[j].numpy()
            si = b.site_index[j].numpy()[v]
            inp[row[int(b.sample[j])], si] = b.genotype[j].numpy()[v]
            tgt[row[int(b.sample[j])], si] = b.target[j].numpy()[v]
    pa = np.clip(af, 1e-3, 1 - 1e-3)
    lo_eps = np.full(S, np.log(1e-3))
    log_h0 = np.stack([np.log(1 - pa), np.log(pa), lo_eps])  # log P(g = 0/1/2 | h = 0)
    log_h1 = np.stack([lo_eps, np.log(1 - pa), np.log(pa)])  # log P(g | h = 1)
    guess, _ = em.af_baseline(af)
    bins = em.maf_bin_index(np.minimum(af, 1 - af))
    nb = len(em.maf_bin_labels())
    hit, hit_base, n, calls = (np.zeros(nb) for _ in range(4))
    cols = np.arange(S)
    for r in range(len(val)):
        g = inp[r]
        vis = g <= 2
        c0 = np.where(vis, log_h0[np.minimum(g, 2), cols], 0.0).astype(np.float32)
        c1 = np.where(vis, log_h1[np.minimum(g, 2), cols], 0.0).astype(np.float32)
        cs = np.concatenate([np.zeros((H.shape[0], 1), np.float32), np.cumsum(H * (c1 - c0) + c0, 1)], 1)
        sc = np.flatnonzero(tgt[r] != IGNORE_INDEX)
        ll = cs[:, np.minimum(sc + a.span + 1, S)] - cs[:, np.maximum(sc - a.span, 0)]  # (2n, m)
        w = np.exp(ll - ll.max(0, keepdims=True))
        q = (w * H[:, sc]).sum(0) / w.sum(0)
        ps = af[sc]
        pred = np.stack([(1 - q) * (1 - ps), q * (1 - ps) + (1 - q) * ps, q * ps], -1).argmax(-1)
        y, bb, base = tgt[r, sc], bins[sc], guess[sc]
        for k in range(nb):
            m = bb == k
            hit[k] += (pred[m] == y[m]).sum()
            hit_base[k] += (base[m] == y[m]).sum()
            n[k] += m.sum()
            calls[k] += (pred[m] != base[m]).sum()
    print(f"copying predictor, +-{a.span} sites: acc {hit.sum() / n.sum():.4f}, "
          f"AF baseline {hit_base.sum() / n.sum():.4f}")
    rows = [{"maf_bin": "all", "n": int(n.sum()), "copying": hit.sum() / n.sum(), "af_baseline": hit_base.sum() / n.sum(),
             "gain": (hit.sum() - hit_base.sum()) / n.sum()}]
    for k, lab in enumerate(em.maf_bin_labels()):
        if n[k]:
            rows.append({"maf_bin": lab, "n": int(n[k]), "copying": hit[k] / n[k], "af_baseline": hit_base[k] / n[k],
                         "gain": (hit[k] - hit_base[k]) / n[k], "non_modal_calls": calls[k] / n[k]})
            print(f"  {lab}: {hit[k] / n[k]:.4f} vs {hit_base[k] / n[k]:.4f} gain {(hit[k] - hit_base[k]) / n[k]:+.4f} "
                  f"(non-modal calls {calls[k] / n[k]:.4f})")
    _results.write(a.json, command="copy_ceiling", results={"copy_ceiling": rows},
                   info={"half_window": a.half_window, "val_rate": a.val_rate, "seq_len": a.seq_len})


if __name__ == "__main__":
    main()
