"""Relationship degrees on held-out simulated pedigrees: ``snpbag relate`` against KING's thresholds.

Steps: ``snpbag simulate --pedigree`` twice (training families with ``--seed``, held-out
families with ``--seed + 1``: different founders) → ``relate train`` on the first →
per true degree 1..9 and unrelated, exact and within-±1 accuracy of the classifier's calls
and of KING's degree thresholds (snpbag.kinship.degrees) on the pairs' exact KING kinship,
on the held-out families, with as many cross-family unrelated pairs as related ones.

    .venv/bin/python tools/bench/relate_vs_king.py --workdir /tmp/bench_relate --train-families 8 \\
        --test-families 4 --length 1000000
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np

import _results

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # before torch: 2-core machines (docs/cpu.md)


def main() -> None:
    from snpbag.eval.relate import degree_accuracy
    from snpbag.inference import relate as rel
    from snpbag.kinship import degrees, pairfeatures as pf
    from snpbag.simulate.cohort import simulate

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench_relate"))
    p.add_argument("--train-families", type=int, default=8)
    p.add_argument("--test-families", type=int, default=4)
    p.add_argument("--chromosomes", type=int, default=22)
    p.add_argument("--length", type=int, default=1_000_000)
    p.add_argument("--patch-sites", type=int, default=512)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--unrelated-per-related", type=float, default=2.0, help="extra unrelated training pairs")
    p.add_argument("--seed", type=int, default=1)
    _results.add_json_option(p)
    a = p.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    t0 = time.perf_counter()
    train_dir, test_dir, model = a.workdir / "train", a.workdir / "test", a.workdir / "model"
    for d, n, s in ((train_dir, a.train_families, a.seed), (test_dir, a.test_families, a.seed + 1)):
        simulate(d, length=a.length, pedigree=n, chromosomes=a.chromosomes, seed=s)
    t1 = time.perf_counter()
    summary = rel.train(pedigree=[train_dir], out=model, patch_sites=a.patch_sites,
                        fit=rel.Fit(epochs=a.epochs, seed=a.seed,
                                                unrelated_per_related=a.unrelated_per_related))
    t2 = time.perf_counter()
    net, meta = rel.load(model)
    test = rel.pedigree_pairs(test_dir, max_degree=net.cfg.max_degree, patch_sites=a.patch_sites,
                              unrelated_per_related=1.0, seed=a.seed + 100)
    truth = rel.degrees_of_classes(test.y, net.cfg.max_degree)
    head = degree_accuracy(truth, rel.called_degrees(net, test, a.patch_sites))
    king = degrees.degree(pf.pair_summary(test.counts)[:, 0]).astype(np.int64)
    king = np.where(king == 0, 1, king)  # duplicate/MZ calls count as degree 1 (none are simulated)
    king_acc = degree_accuracy(truth, king)
    t3 = time.perf_counter()
    print(summary.line())
    print("degree  pairs  head exact  head ±1  KING exact  KING ±1")
    for k in head:
        h, g = head[k], king_acc[k]
        print(f"{k:>6}  {h['n']:>5}  {h['exact']:10.2f}  {h['within1']:7.2f}  {g['exact']:10.2f}  {g['within1']:7.2f}")
    rows = [{"degree": k, "pairs": head[k]["n"], "head_exact": head[k]["exact"], "head_within1": head[k]["within1"],
             "king_exact": king_acc[k]["exact"], "king_within1": king_acc[k]["within1"]} for k in head]
    _results.write(a.json, command="relate_vs_king", results={"degrees": rows}, info={
        "variants_train": meta["training"]["variants"], "variants_test": test.variants,
        "training_pairs": meta["training"]["pairs"], "temperature": meta["training"]["temperature"],
        "seconds_simulate": t1 - t0, "seconds_train": t2 - t1, "seconds_evaluate": t3 - t2})

if __name__ == "__main__":
    main()
