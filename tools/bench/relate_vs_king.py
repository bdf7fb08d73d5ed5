"""Relationship degrees on held-out simulated pedigrees: ``snpbag relate`` against KING's thresholds and the oracle.

Steps: ``snpbag simulate --pedigree --max-degree D --array-fraction F`` twice (training
families with ``--seed``, held-out families with ``--seed + 1``: different founders), and the
same two again with ``--genotype-error E`` (same families and sites, noisy calls). Each
setting — ``sequence`` (every site), ``array`` (the array sites, ~F of the common ones),
``error`` (every site, noisy), ``array_error`` — trains its own classifier on the training
families of that setting with ``snpbag relate train`` (classifier and shared-segment caller, as a
user would train on a simulation matching their data) and is scored on the held-out ones: per
true degree 1..D and unrelated, exact and within-±1 accuracy of ``snpbag relate`` itself (the
library call behind the command, on the simulation's genetic map, with each sample's population;
also without populations — one pooled background — and with the IBS0 detector), of the trained
classifier alone, of KING's thresholds (snpbag.kinship.degrees) on the pairs' exact KING
kinship (what ``snpbag king`` writes), and of the oracle (the same thresholds on the true
realised kinship from the simulator's IBD truth); confusion matrices (tables for the
first setting, a PNG for all); what the ``--min-kinship`` prefilter keeps per degree; and,
for the held-out degree-2 pairs, the classifier's degree-2 type (half siblings,
grandparent–grandchild, avuncular) against the truth, per true type. ``--sims DIR`` reuses
another run's simulations instead of simulating (its error settings: the same genotypes with the
simulator's error model applied afresh, :func:`_noisy_copy`), ``--models DIR`` another run's trained
models (the same training families scored on another held-out seed); ``--demography`` names the founders' demography when
simulating (``growth``: explosive recent growth and an admixed population). Per population, the
within-±1 accuracy of ``snpbag relate`` on the pairs whose two members are of that population.

    .venv/bin/python tools/bench/relate_vs_king.py --workdir /tmp/bench_relate --train-families 6 \\
        --test-families 6 --length 2000000 --png docs/relate_confusion.png
    .venv/bin/python tools/bench/relate_vs_king.py --workdir /tmp/relprod --sims /tmp/relfix --settings array \\
        --epochs 20 --json docs/bench/relate_vs_king.json
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

SETTINGS = ("sequence", "array", "error", "array_error")
CALLERS = ("relate", "KING", "oracle")
#: More callers in the degree tables: the product without populations (one pooled background), with the
#: IBS0-free runs instead of haplotype IBD, and the trained classifier alone.
EXTRA = ("relate_pairwise", "relate_pooled", "relate_ibs0", "classifier")


def _link_setting(sim: Path, vcf: str, out: Path) -> Path:
    """A pedigree directory whose pedigree.vcf.gz is ``sim/vcf`` (truth tables shared)."""
    out.mkdir(parents=True)
    (out / "pedigree.vcf.gz").symlink_to((sim / vcf).resolve())
    for name in ("samples.tsv", "pedigree_pairs.tsv", "simulation.json"):
        (out / name).symlink_to((sim / name).resolve())
    return out


def _noisy_copy(sim: Path, out: Path, vcfs: list[str], rate: float, seed: int) -> Path:
    """A reused simulation with genotype errors: ``out`` links every file of ``sim`` but ``vcfs``, which it
    rewrites with each diploid call replaced at ``rate`` by one of the two other genotypes (the simulator's
    own error model, ``snpbag.simulate.pedigree.genotype_errors``; its random stream, not the one
    ``snpbag simulate --genotype-error`` would draw)."""
    import gzip

    from snpbag.io.bgzf import index_vcf, write_bgzf
    from snpbag.simulate.pedigree import genotype_errors

    out.mkdir(parents=True)
    for f in sim.iterdir():
        if f.name not in vcfs and f.name.removesuffix(".tbi") not in vcfs:
            (out / f.name).symlink_to(f.resolve())
    rng = np.random.default_rng(seed)

    def noisy(lines: list[str]) -> str:
        head = [x.split("\t", 9) for x in lines]
        calls = np.frombuffer("".join(h[9].rstrip("\n") + "\t" for h in head).encode(), dtype=np.uint8).copy()
        calls = calls.reshape(len(lines), -1, 4)  # "a|b\t": phased biallelic calls, as the simulator writes
        alleles = calls[:, :, [0, 2]] - ord("0")
        if calls[:, :, 1].min() != ord("|") or alleles.max() > 1:
            raise ValueError(f"{sim}: not phased biallelic calls as `snpbag simulate` writes them")
        g = genotype_errors(alleles.reshape(len(lines), -1).astype(np.int8), rate, rng)
        calls[:, :, [0, 2]] = g.reshape(len(lines), -1, 2) + ord("0")
        body = calls.tobytes().decode()
        n = calls.shape[1] * 4
        return "".join("\t".join(h[:9]) + "\t" + body[k * n:(k + 1) * n - 1] + "\n" for k, h in enumerate(head))

    def chunks(path: Path):
        with gzip.open(path, "rt") as fh:
            block = []
            for line in fh:
                if line.startswith("#"):
                    yield line
                    continue
                block.append(line)
                if len(block) == 4096:
                    yield noisy(block)
                    block = []
            if block:
                yield noisy(block)

    for name in vcfs:
        index_vcf(write_bgzf(chunks(sim / name), out / name))
    return out


def _realised(test_dir: Path, ids: list[str], pairs: np.ndarray) -> np.ndarray:
    """True realised kinship of each pair (pairs across families share no founder haplotype: 0)."""
    lines = (test_dir / "pedigree_pairs.tsv").read_text().splitlines()
    col = lines[0].split("\t").index("ibd_kinship")
    ibd = {frozenset(x.split("\t")[:2]): float(x.split("\t")[col]) for x in lines[1:]}
    return np.array([ibd.get(frozenset((ids[i], ids[j])), 0.0) for i, j in pairs])


def _product(model: Path, test_dir: Path, sim: Path, ids: list[str], pairs: np.ndarray, out: Path, *,
             every_pair: bool = False, **options) -> dict[str, np.ndarray]:
    """What ``snpbag relate`` (the library call behind the command) writes for ``pairs`` of the held-out
    pedigree, on the simulation's own genetic map: DEGREE and PAIR_DEGREE (UNRELATED for UN) and PO (degree-1
    pairs called parent–offspring), in the order of ``pairs``. With ``every_pair`` it scores every pair of the
    held-out genomes (``--prefilter none``: the relatives step sees the whole cohort, as it would run) and
    adds, over every unrelated pair, how many are called related with and without the relatives' bounds."""
    from snpbag.eval.relate import UNRELATED
    from snpbag.inference import relate as rel

    if every_pair:
        options["prefilter"] = "none"
    else:
        options["pairs"] = out.with_suffix(".pairs")
        options["pairs"].write_text("".join(f"{ids[i]}\t{ids[j]}\n" for i, j in pairs))
    rel.relate(model=model, input=test_dir / "pedigree.vcf.gz", out=out, genetic_map=sim, **options)
    lines = Path(f"{out}.rel").read_text().splitlines()
    head = lines[0].split("\t")
    got = {frozenset(x.split("\t")[:2]): x.split("\t") for x in lines[1:]}
    rows = [got[frozenset((ids[i], ids[j]))] for i, j in pairs]
    degree = lambda c: np.array([UNRELATED if r[head.index(c)] == "UN" else int(r[head.index(c)]) for r in rows])  # noqa: E731
    result = {"DEGREE": degree("DEGREE"), "PAIR_DEGREE": degree("PAIR_DEGREE"),
              "PO": np.array([r[head.index("PO_FS")] == "PO" for r in rows])}
    if every_pair:
        related = {frozenset((r["id1"], r["id2"])) for r in rel._read_tsv(test_dir / "pedigree_pairs.tsv")
                   if r["degree"] != "NA"}
        un = [r for k, r in got.items() if k not in related]
        result["unrelated_pairs"] = np.array(len(un))
        for c in ("DEGREE", "PAIR_DEGREE"):
            result[f"unrelated_called_related_{c}"] = np.array(sum(r[head.index(c)] != "UN" for r in un))
    return result


def _sampled(truth: np.ndarray, own: dict[str, np.ndarray], pairs: np.ndarray, shares: list[float], repeats: int,
             max_degree: int, seed: int) -> list[dict]:
    """Within-±1 accuracy per true degree when only a share of the held-out genomes is in the cohort (each kept
    at random, ``repeats`` draws pooled): the pairs' own calls, and the same calls bounded by the parents found
    among the kept genomes (snpbag.kinship.relatives, as ``snpbag relate`` runs it on its pairs)."""
    from snpbag.eval.relate import UNRELATED, degree_accuracy
    from snpbag.kinship.relatives import lift

    rng = np.random.default_rng(seed)
    n = int(pairs.max()) + 1
    rows: dict[str, dict] = {}
    for share in shares:
        t_all, own_all, rel_all = [], [], []
        for _ in range(repeats):
            keep = rng.random(n) < share
            m = keep[pairs[:, 0]] & keep[pairs[:, 1]]
            called = own["PAIR_DEGREE"][m]
            lifted = lift(pairs[m], np.where(called == UNRELATED, 0, called), own["PO"][m], max_degree=max_degree,
                          only_scored=True)
            bounded = called.copy()
            bounded[lifted.scored] = lifted.degree
            t_all.append(truth[m])
            own_all.append(called)
            rel_all.append(bounded)
        t = np.concatenate(t_all)
        for name, c in (("own", own_all), ("relatives", rel_all)):
            for d, v in degree_accuracy(t, np.concatenate(c)).items():
                rows.setdefault(d, {"degree": d})[f"pairs_{share:g}"] = v["n"]
                rows[d][f"{name}_within1_{share:g}"] = v["within1"]
    return list(rows.values())


def _by_population(truth: np.ndarray, called: np.ndarray, sim: Path, ids: list[str], pairs: np.ndarray
                   ) -> list[dict]:
    """``snpbag relate``'s within-±1 accuracy per true degree for the pairs whose two members are of one
    population (every related pair; unrelated pairs of two populations are left out), one row per population."""
    from snpbag.eval.relate import degree_accuracy
    from snpbag.inference.relateersa import read_populations

    pop = read_populations(sim / "samples.tsv", ids)
    first = np.array([pop[ids[i]] for i in pairs[:, 0]])
    same = first == np.array([pop[ids[j]] for j in pairs[:, 1]])
    rows = []
    for p in sorted(set(first[same].tolist())):
        m = same & (first == p)
        acc = degree_accuracy(truth[m], called[m])
        rows.append({"population": p, "pairs": int(m.sum()), **{f"{k}_within1": v["within1"] for k, v in acc.items()}})
    return rows


def _plot(confusions: dict[str, dict[str, tuple[list[str], np.ndarray]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(confusions)
    fig, axes = plt.subplots(len(rows), len(CALLERS), figsize=(4.2 * len(CALLERS), 3.9 * len(rows)), squeeze=False)
    for r, setting in enumerate(rows):
        for c, caller in enumerate(CALLERS):
            labels, m = confusions[setting][caller]
            share = m / np.maximum(m.sum(1, keepdims=True), 1)
            ax = axes[r, c]
            im = ax.imshow(share, vmin=0, vmax=1, cmap="viridis")
            ax.set_xticks(range(len(labels)), labels, fontsize=7)
            ax.set_yticks(range(len(labels)), labels, fontsize=7)
            ax.set_xlabel("called degree", fontsize=8)
            ax.set_ylabel("true degree", fontsize=8)
            ax.set_title(f"{caller} — {setting}", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.6, label="share of the true degree's pairs")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    from snpbag.eval.relate import degree_accuracy, degree_confusion, prefilter_recall
    from snpbag.inference import relate as rel
    from snpbag.inference.relateersa import king_threshold_degrees
    from snpbag.kinship.estimators import kinship
    from snpbag.model.relate import SUBTYPES
    from snpbag.simulate.cohort import simulate

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench_relate"))
    p.add_argument("--train-families", type=int, default=6)
    p.add_argument("--test-families", type=int, default=6)
    p.add_argument("--chromosomes", type=int, default=22)
    p.add_argument("--length", type=int, default=2_000_000)
    p.add_argument("--max-degree", type=int, default=12, help="family template and classifier classes")
    p.add_argument("--array-fraction", type=float, default=0.2)
    p.add_argument("--genotype-error", type=float, default=0.005)
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--patch-sites", type=int, default=512, help="sites per patch at sequence density")
    p.add_argument("--array-patch-sites", type=int, default=128, help="sites per patch at array density")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--unrelated-per-related", type=float, default=2.0, help="extra unrelated training pairs")
    p.add_argument("--cuts", default="0.0884,0.0442,0.0221,0.011", help="--min-kinship values to measure")
    p.add_argument("--png", type=Path, default=None, help="confusion matrices (default WORKDIR/confusion.png)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sampled", default="0.75,0.5,0.25", help="shares of the held-out genomes in a cohort: the "
                   "pairs' own calls against the calls bounded by the relatives found among them")
    p.add_argument("--sampled-repeats", type=int, default=5, help="random cohorts per share")
    p.add_argument("--demography", default="ooa", help="snpbag simulate --demography of the founders (growth: "
                   "explosive recent growth and an admixed population)")
    p.add_argument("--sims", type=Path, default=None, help="reuse DIR/sim/train and DIR/sim/test (another run's "
                   "simulations, read only; the error settings apply genotype errors to its VCFs) instead of simulating")
    p.add_argument("--models", type=Path, default=None, help="reuse another run's trained models (DIR/SETTING/model) "
                   "instead of training: e.g. the same training families scored on another held-out seed")
    _results.add_json_option(p)
    a = p.parse_args()
    settings = a.settings.split(",")
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        p.error(f"--settings: unknown {', '.join(sorted(unknown))}; choose from {', '.join(SETTINGS)}")
    cuts = [float(x) for x in a.cuts.split(",")]
    shutil.rmtree(a.workdir, ignore_errors=True)
    t0 = time.perf_counter()
    noisy = any("error" in s for s in settings)
    sims = {(split, False): a.sims / "sim" / split for split in ("train", "test")} if a.sims else {}
    for k, split in enumerate(("train", "test") if a.sims is not None and noisy else ()):
        vcfs = [v for s, v in (("error", "pedigree.vcf.gz"), ("array_error", "pedigree_array.vcf.gz")) if s in settings]
        sims[split, True] = _noisy_copy(sims[split, False], a.workdir / "sim" / f"{split}_error", vcfs,
                                        a.genotype_error, a.seed + k)
    for split, n, seed in (("train", a.train_families, a.seed), ("test", a.test_families, a.seed + 1)):
        if a.sims is not None:
            break
        for err in ((None, a.genotype_error) if noisy else (None,)):
            d = a.workdir / "sim" / f"{split}{'_error' if err else ''}"
            simulate(d, length=a.length, pedigree=n, chromosomes=a.chromosomes, seed=seed,
                     max_degree=a.max_degree, array_fraction=a.array_fraction, genotype_error=err,
                     demography=a.demography)
            sims[split, bool(err)] = d
    seconds = {"simulate": time.perf_counter() - t0}
    tables, confusions, info = {}, {}, {}
    for setting in settings:
        t1 = time.perf_counter()
        vcf = "pedigree_array.vcf.gz" if setting.startswith("array") else "pedigree.vcf.gz"
        patch = a.array_patch_sites if setting.startswith("array") else a.patch_sites
        err = setting.endswith("error")
        train_dir = _link_setting(sims["train", err], vcf, a.workdir / setting / "train")
        test_dir = _link_setting(sims["test", err], vcf, a.workdir / setting / "test")
        if a.models is None:
            model = a.workdir / setting / "model"
            summary = rel.train(pedigree=[train_dir], out=model, patch_sites=patch, max_degree=a.max_degree,
                                fit=rel.Fit(epochs=a.epochs, seed=a.seed,
                                            unrelated_per_related=a.unrelated_per_related)).line()
        else:
            model = a.models / setting / "model"
            summary = f"{model}: reused"
        t2 = time.perf_counter()
        net, meta = rel.load(model)
        test = rel.pedigree_pairs(test_dir, max_degree=a.max_degree, patch_sites=patch,
                                  unrelated_per_related=1.0, seed=a.seed + 100)
        truth = rel.degrees_of_classes(test.y, a.max_degree)
        t = test.counts.sum(axis=1, dtype=np.int64)
        king_k = kinship(t[:, 0], t[:, 1], t[:, 2], t[:, 3])
        two = test.sub >= 0
        typ = rel.called_subtypes(net, test.subset(two), patch)
        tables[f"subtypes_{setting}"] = [
            {"true type": name, "pairs": int((test.sub[two] == k).sum()),
             **{f"called_{n}": float(np.mean(typ[test.sub[two] == k] == c)) if (test.sub[two] == k).any() else None
                for c, n in enumerate(SUBTYPES)}} for k, name in enumerate(SUBTYPES)]
        sim_test = sims["test", err]
        run = {}
        for name, options in (("relate", {"populations": sim_test / "samples.tsv", "every_pair": True}),
                              ("relate_pooled", {}),
                              ("relate_ibs0", {"populations": sim_test / "samples.tsv", "segments": "ibs0"})):
            t3, c3 = time.perf_counter(), time.process_time()
            run[name] = _product(model, test_dir, sim_test, test.ids, test.pairs, a.workdir / setting / name,
                                 **options)
            seconds[f"{name}_{setting}"], seconds[f"{name}_{setting}_cpu"] = \
                time.perf_counter() - t3, time.process_time() - c3
        called = {"relate": run["relate"]["DEGREE"], "KING": king_threshold_degrees(king_k),
                  "oracle": king_threshold_degrees(_realised(test_dir, test.ids, test.pairs)),
                  "relate_pairwise": run["relate"]["PAIR_DEGREE"],
                  "relate_pooled": run["relate_pooled"]["DEGREE"], "relate_ibs0": run["relate_ibs0"]["DEGREE"],
                  "classifier": rel.called_degrees(net, test, patch)}
        shown = CALLERS + EXTRA
        acc = {c: degree_accuracy(truth, called[c]) for c in shown}
        tables[f"degrees_{setting}"] = [
            {"degree": k, "pairs": acc["relate"][k]["n"],
             **{f"{c}_{m}": acc[c][k][m] for c in shown for m in ("exact", "within1")}} for k in acc["relate"]]
        tables[f"populations_{setting}"] = _by_population(truth, called["relate"], sim_test, test.ids, test.pairs)
        r = run["relate"]
        tables[f"every_unrelated_{setting}"] = [{
            "unrelated pairs": int(r["unrelated_pairs"]),
            "called related, own call": int(r["unrelated_called_related_PAIR_DEGREE"]),
            "called related, with relatives": int(r["unrelated_called_related_DEGREE"])}]
        confusions[setting] = {c: degree_confusion(truth, called[c], a.max_degree) for c in CALLERS}
        if setting == settings[0]:
            for c in CALLERS:
                labels, m = confusions[setting][c]
                tables[f"confusion_{c}_{setting}"] = [
                    {"true \\ called": labels[i], **{lab: int(m[i, j]) for j, lab in enumerate(labels)}}
                    for i in range(len(labels))]
        if setting in ("sequence", "array"):
            tables[f"prefilter_{setting}"] = prefilter_recall(truth, king_k, cuts)
        shares = [float(x) for x in a.sampled.split(",") if x]
        if shares:
            tables[f"sampled_{setting}"] = _sampled(truth, run["relate"], test.pairs, shares, a.sampled_repeats,
                                                    a.max_degree, a.seed)
        seg = meta["segments"]
        info[setting] = {"variants_train": meta["training"]["variants"], "variants_test": test.variants,
                         "patch_sites": patch, "model": str(model),
                         "training_pairs": sum(v for k, v in meta["training"]["pairs"].items() if ":" not in k),
                         "temperature": round(meta["training"]["temperature"], 3),
                         **{f"min_lod_{d}_{m}": round(v, 3) for d, r in seg["detectors"].items()
                            for m, v in r["min_lod"].items()}}
        seconds[f"train_{setting}"] = t2 - t1
        seconds[f"evaluate_{setting}"] = time.perf_counter() - t2
        print(summary)
        print(f"{setting}: degree  pairs  " + "  ".join(f"{c} exact  {c} ±1" for c in shown))
        for r in tables[f"degrees_{setting}"]:
            print(f"{r['degree']:>6} {r['pairs']:>6}  " + "  ".join(
                f"{r[f'{c}_exact']:.2f} {r[f'{c}_within1']:.2f}" for c in shown))
        for r in tables[f"populations_{setting}"]:
            print(f"{setting} relate within ±1, {r['population']} ({r['pairs']} pairs): " + " ".join(
                f"{k.split('_')[0]} {v:.2f}" for k, v in r.items() if k.endswith("_within1")))
        for r in tables[f"subtypes_{setting}"]:
            print(f"{setting} degree 2, true {r['true type']} ({r['pairs']} pairs): called " + "  ".join(
                f"{n} {r[f'called_{n}']:.2f}" for n in SUBTYPES if r[f"called_{n}"] is not None))
        print(f"{setting} every pair of the held-out genomes: {tables[f'every_unrelated_{setting}'][0]}")
        for r in tables.get(f"sampled_{setting}", []):
            print(f"{setting} sampled, degree {r['degree']}: " + "  ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items() if k != "degree"))
    png = a.png or a.workdir / "confusion.png"
    _plot(confusions, png)
    _results.write(a.json, command="relate_vs_king", results=tables, info={
        **{f"{s}_{k}": v for s, d in info.items() for k, v in d.items()},
        **{f"seconds_{k}": round(v, 1) for k, v in seconds.items()}, "png": str(png)})


if __name__ == "__main__":
    main()
