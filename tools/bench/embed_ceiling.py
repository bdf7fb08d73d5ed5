"""What limits reconstruction from patch embeddings: two references on bench_embed's data.

1. A linear code of the same size: per patch (the embedding head's grid: ``--patch`` sites of each
   tile), the top ``k`` principal components of the training genomes' dosages; held-out genomes
   are projected, reconstructed and rounded to a genotype. Scored on every called genotype of the
   held-out genomes (the split of ``snpbag train``: ``data.val_fraction`` 0.1, ``--seed``), next to
   the allele-frequency baseline (most likely genotype under Hardy-Weinberg).
2. With ``--model`` (a pretrained model directory): whether the encoder's output keeps each
   visible site's genotype, as a ridge probe shared by all sites (hidden state -> genotype),
   fitted on the training genomes and scored on the held-out ones, nothing masked, on the first
   ``--probe-sites`` sites of the first tile.

    python tools/bench/embed_ceiling.py --store /tmp/bench_embed/cohort.zarr --patch 256 \\
        --components 4,8,16,32,64 --model /tmp/bench_embed/model_pre --seed 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import _results
import numpy as np


def pca_codes(store, patch: int, ks: list[int], train: np.ndarray, val: np.ndarray) -> tuple[dict, tuple[int, int]]:
    """{k: (correct, scored)} of the per-patch PCA code, and (correct, scored) of the AF baseline."""
    res = {k: [0, 0] for k in ks}
    base = [0, 0]
    for tile in range(store.n_tiles):
        d = store.read_dosage(tile).astype(np.float64)  # (samples, L), -1 missing
        for a in range(0, d.shape[1], patch):
            x = d[:, a:a + patch]
            called = x >= 0
            mu = np.nan_to_num(np.nanmean(np.where(called, x, np.nan)[train], axis=0))
            p = mu / 2
            mode = np.stack([(1 - p) ** 2, 2 * p * (1 - p), p ** 2]).argmax(0)
            cv = called[val]
            base[0] += int(((x[val] == mode) & cv).sum())
            base[1] += int(cv.sum())
            filled = np.where(called, x, mu)
            _, _, vt = np.linalg.svd(filled[train] - mu, full_matrices=False)
            for k in ks:
                v = vt[:k]
                rec = np.clip(np.rint((filled[val] - mu) @ v.T @ v + mu), 0, 2)
                res[k][0] += int(((rec == x[val]) & cv).sum())
                res[k][1] += int(cv.sum())
    return res, tuple(base)


def probe(model_dir: Path, store, train: np.ndarray, val: np.ndarray, n_sites: int) -> tuple[float, int]:
    """Held-out accuracy of a ridge probe hidden state -> own genotype (nothing masked)."""
    import torch

    from snpbag import modeldir
    from snpbag.data.batch import Batch
    from snpbag.data.tokens import MISSING

    model = modeldir.read(model_dir).model.eval()
    tile = store.tiles[0]
    d = store.read_dosage(0)[:, :n_sites]
    n, L = d.shape
    site = torch.arange(tile.site_start, tile.site_start + L)[None].expand(n, L)
    geno = torch.as_tensor(np.where(d < 0, MISSING, d)).long()
    batch = Batch(genotype=geno, site_index=site, position=site * 100, valid=torch.ones(n, L, dtype=torch.bool),
                  target=torch.full((n, L), -100), tile=torch.zeros(n, dtype=torch.long), sample=torch.arange(n),
                  offset=torch.zeros(n, dtype=torch.long), truth=geno.clone())
    with torch.no_grad():
        h = model.encoder(batch).hidden.float().numpy()  # (n, L, C)
    x = np.concatenate([h, np.ones(h.shape[:2] + (1,))], -1)
    y = np.eye(4)[np.where(d < 0, 3, d)]
    xt, yt = x[train].reshape(-1, x.shape[-1]), y[train].reshape(-1, 4)
    w = np.linalg.solve(xt.T @ xt + 1e-3 * np.eye(xt.shape[1]), xt.T @ yt)
    pred = (x[val] @ w).argmax(-1)
    ok = d[val] >= 0
    return float(((pred == d[val]) & ok).sum() / ok.sum()), int(ok.sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--components", default="4,8,16,32,64")
    p.add_argument("--seed", type=int, default=1, help="the training run's seed (its validation split)")
    p.add_argument("--model", type=Path, default=None, help="pretrained model directory for the encoder probe")
    p.add_argument("--probe-sites", type=int, default=512)
    _results.add_json_option(p)
    a = p.parse_args()

    from snpbag.data.datamodule import split_samples
    from snpbag.store.genotypes import open_store

    store = open_store(str(a.store))
    train, val = split_samples(store.n_samples, val_fraction=0.1, seed=a.seed)
    ks = [int(k) for k in a.components.split(",")]
    res, base = pca_codes(store, a.patch, ks, train, val)
    rows = [{"code": "allele-frequency baseline", "numbers_per_patch": 0, "accuracy": base[0] / base[1]}]
    rows += [{"code": f"PCA of the patch's dosages, top {k}", "numbers_per_patch": k, "accuracy": c / n}
             for k, (c, n) in res.items()]
    for r in rows:
        print(f"| {r['code']} | {r['numbers_per_patch']} | {r['accuracy']:.4f} |")
    results = {"linear_code": rows}
    info = {"held_out_genomes": int(val.size), "scored_genotypes": base[1], "patch": a.patch}
    if a.model is not None:
        acc, n = probe(a.model, store, train, val, a.probe_sites)
        print(f"encoder probe (hidden -> own genotype, held-out, nothing masked): {acc:.4f} of {n:,}")
        results["encoder_probe"] = [{"model": a.model.name, "sites": a.probe_sites, "scored": n, "accuracy": acc}]
    _results.write(a.json, command="embed_ceiling", results=results, info=info)


if __name__ == "__main__":
    main()
