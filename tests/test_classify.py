"""``snpbag classify`` and its parts: F1 and confusion against naive counts, folds that never
split relatives or duplicates, PCA equal to plink2 --pca and to an SVD, logistic regression
equal to a gradient-descent reference, the linear classifier equal to it, kNN equal to a loop, temperature scaling, and the
train/predict commands end to end with their one-line errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import requires_tool

from snpbag.errors import InputError
from snpbag.eval import classify as m
from snpbag.eval.baselines import LogisticRegression, knn_predict, pca, standardised
from snpbag.inference import classify
from snpbag.inference.classfit import L2_GRID, choose_l2, standardised_views
from snpbag.inference.embedout import EmbeddingWriter, Patches

torch.set_num_threads(1)


# --- metrics ----------------------------------------------------------------------------------


def test_f1_and_confusion_match_naive_counts():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.7, y, rng.integers(-1, 4, 200))  # some unassigned (-1)
    cm = m.confusion_matrix(y, p, 4)
    for a in range(4):
        for b in range(4):
            assert cm[a, b] == sum(1 for t, q in zip(y, p) if t == a and q == b)
    for c in range(4):
        tp = sum(1 for t, q in zip(y, p) if t == c and q == c)
        fp = sum(1 for t, q in zip(y, p) if t != c and q == c)
        fn = sum(1 for t, q in zip(y, p) if t == c and q != c)
        assert m.f1_per_class(y, p, 4)[c] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert m.macro_f1(y, y, 4) == 1.0


def test_folds_keep_groups_whole_and_classes_balanced():
    rng = np.random.default_rng(1)
    n = 120
    y = np.repeat(np.arange(3), 40)
    pairs = [(i, i + 1) for i in range(0, n - 1, 7)] + [(3, 90)]  # families, one across classes
    x = rng.normal(size=(n, 4))
    x[50] = x[10]  # a duplicate genome
    groups = m.groups_of(n, pairs + m.duplicate_pairs(x))
    assert groups[50] == groups[10] and groups[3] == groups[90] and groups[7] == groups[8] != groups[9]
    folds = m.stratified_group_folds(y, groups, folds=5, repeats=3, seed=0)
    assert len(folds) == 3 and not np.array_equal(folds[0], folds[1])
    for fold_of in folds:
        assert set(fold_of.tolist()) == set(range(5))
        for a, b in pairs + [(10, 50)]:
            assert fold_of[a] == fold_of[b]  # relatives and duplicates never straddle a split
        for c in range(3):
            counts = np.bincount(fold_of[y == c], minlength=5)
            assert counts.max() - counts.min() <= 3


@pytest.mark.parametrize("counts, match", [
    ([10], r"only one class \(a\)"),
    ([10, 3], r"class b \(3\) has fewer samples than --folds 5"),
])
def test_bad_label_sets_fail_clearly(counts, match):
    y = np.repeat(np.arange(len(counts)), counts)
    with pytest.raises(InputError, match=match):
        m.check_labels(y, ["a", "b"][: len(counts)], folds=5, what="labels.tsv")


# --- baselines --------------------------------------------------------------------------------


def _dosage(n=24, sites=300, seed=3):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.5, sites)
    shift = np.repeat([0.0, 0.15], n // 2)[:, None]
    return rng.binomial(2, np.clip(p + shift * (rng.random(sites) < 0.3), 0, 1)).astype(np.int8)


def test_pca_equals_an_svd_of_the_standardised_genotypes():
    g = _dosage()
    vecs, vals = pca(g, 5)
    x = standardised(g)
    u, s, _ = np.linalg.svd(x / np.sqrt(x.shape[1]), full_matrices=False)
    assert np.allclose(vals, s[:5] ** 2)
    assert np.allclose(np.abs(vecs), np.abs(u[:, :5]), atol=1e-8)


@requires_tool("plink2")
def test_pca_equals_plink2(tmp_path):
    g = _dosage(n=60)  # plink2 estimates the frequencies itself from 50 samples up
    n, sites = g.shape
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=1,length=100000000>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(f"S{i}" for i in range(n))]
    gt = {0: "0/0", 1: "0/1", 2: "1/1"}
    for j in range(sites):
        lines.append(f"1\t{1000 + 10 * j}\tv{j}\tA\tG\t.\tPASS\t.\tGT\t" + "\t".join(gt[int(v)] for v in g[:, j]))
    (tmp_path / "x.vcf").write_text("\n".join(lines) + "\n")
    subprocess.run(["plink2", "--vcf", str(tmp_path / "x.vcf"), "--pca", "5", "--out", str(tmp_path / "p"),
                    "--threads", "1", "--allow-extra-chr"], check=True, capture_output=True)
    vals = np.loadtxt(tmp_path / "p.eigenval")
    vec = np.loadtxt(tmp_path / "p.eigenvec", comments="#", usecols=range(1, 6))
    mine_vecs, mine_vals = pca(g, 5)
    assert np.allclose(mine_vals, vals, rtol=1e-4)
    # plink2 writes unit-length eigenvectors, with arbitrary signs
    assert np.allclose(np.abs(mine_vecs), np.abs(vec), atol=1e-4)


def test_logistic_regression_reaches_the_gradient_descent_optimum():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(90, 3))
    y = (x @ rng.normal(size=(3, 3)) + rng.normal(size=(90, 3))).argmax(1)
    lr = LogisticRegression(l2=0.5).fit(x, y, 3)
    # reference: plain gradient descent on the same penalised objective
    xs = np.hstack([(x - x.mean(0)) / x.std(0), np.ones((90, 1))])
    w = np.zeros((4, 3))
    pen = np.array([0.5, 0.5, 0.5, 0.0])[:, None]
    for _ in range(20000):
        z = xs @ w
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        w -= 0.005 * (xs.T @ (p - np.eye(3)[y]) + pen * w)
    ref = np.exp(xs @ w)
    ref /= ref.sum(1, keepdims=True)
    assert np.allclose(lr.predict_proba(x), ref, atol=1e-4)


def test_linear_classifier_reaches_the_newton_optimum():
    """fit_linear (L-BFGS, the linear classifier) and the baselines' Newton logistic regression
    minimise the same penalised objective: their probabilities agree."""
    from snpbag.model.popclass import PopClassConfig, PopClassifier, fit_linear

    rng = np.random.default_rng(6)
    x = rng.normal(size=(120, 5)) * rng.uniform(0.5, 3, 5)
    y = (x @ rng.normal(size=(5, 4)) + rng.normal(size=(120, 4))).argmax(1)
    model = PopClassifier(PopClassConfig(kind="linear", n_inputs=5, n_classes=4))
    xt = torch.as_tensor(x, dtype=torch.float32)
    model.mean.copy_(xt.mean(0))
    model.scale.copy_(xt.std(0, unbiased=False))
    fit_linear(model, xt, torch.as_tensor(y), l2=2.0)
    mine = model.probabilities(xt).numpy()
    assert np.allclose(mine, LogisticRegression(l2=2.0).fit(x, y, 4).predict_proba(x), atol=1e-4)


def test_inner_cross_validation_chooses_the_penalty():
    """A huge penalty flattens the weights, so every call goes to the largest class: the inner
    cross-validation must prefer the weak one. Where both score alike (balanced, separable
    classes), the stronger wins the tie. Out-of-fold logits come back for every sample."""
    rng = np.random.default_rng(8)
    y = np.repeat(np.arange(3), [40, 10, 10])
    x = torch.as_tensor(np.eye(3)[y] + rng.normal(size=(60, 3)) * 0.1, dtype=torch.float32)
    l2, logits = choose_l2(standardised_views(x), torch.as_tensor(y), 3, seed=0, grid=(0.1, 1e6))
    assert l2 == 0.1 and logits.shape == (60, 3)
    assert (logits.argmax(1).numpy() == y).mean() > 0.95
    y = np.repeat(np.arange(3), 20)
    x = torch.as_tensor(np.eye(3)[y] + rng.normal(size=(60, 3)) * 0.1, dtype=torch.float32)
    assert choose_l2(standardised_views(x), torch.as_tensor(y), 3, seed=0, grid=(0.1, 1e3))[0] == 1e3


def test_knn_matches_a_loop():
    rng = np.random.default_rng(5)
    tr, ty, te = rng.normal(size=(40, 2)), rng.integers(0, 3, 40), rng.normal(size=(15, 2))
    got = knn_predict(tr, ty, te, k=5)
    for i, q in enumerate(te):
        d = [float(((q - t) ** 2).sum()) for t in tr]
        near = sorted(range(40), key=lambda j: d[j])[:5]
        votes = {c: sum(1 for j in near if ty[j] == c) for c in range(3)}
        best = max(votes.values())
        tied = [c for c in range(3) if votes[c] == best]
        dist = {c: sum(d[j] for j in near if ty[j] == c) for c in tied}
        assert got[i] == min(tied, key=lambda c: (dist[c], c))


def test_temperature_recovers_the_true_one():
    from snpbag.model.popclass import fit_temperature

    g = torch.Generator().manual_seed(0)
    true = torch.randn(4000, 4, generator=g) * 3
    y = torch.multinomial(torch.softmax(true, -1), 1, generator=g).squeeze(1)
    assert fit_temperature(true * 2.5, y) == pytest.approx(2.5, rel=0.08)


# --- the commands -----------------------------------------------------------------------------


def _embeddings(path: Path, x: np.ndarray, samples: list[str], *, model="m1") -> Path:
    patches = Patches(np.array(["1"] * x.shape[1]), np.arange(x.shape[1]) * 100 + 1, np.arange(x.shape[1]) * 100 + 50,
                  np.full(x.shape[1], 10), np.full(x.shape[1], 10), np.zeros(x.shape[1], bool))
    w = EmbeddingWriter(path, "npy", samples=samples, patches=patches, dims=x.shape[2], dtype="f32", pool="none",
                        attrs={"model": {"name": model, "weights_sha256": model * 8, "vocab_sha256": "v"}})
    w.write(0, len(samples), x)
    w.close()
    return path


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("classify")
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(3, 4, 8)) * 1.5
    y = np.repeat(np.arange(3), 20)
    x = (centres[y] + rng.normal(size=(60, 4, 8))).astype(np.float32)
    samples = [f"{'ABC'[c]}{i:02d}" for i, c in enumerate(y)]
    _embeddings(d / "e.npy", x, samples)
    (d / "labels.tsv").write_text("sample\tpop\n" + "".join(f"{s}\t{'ABC'[c]}\n" for s, c in zip(samples, y)))
    return d


FAST = classify.Fit(epochs=60, batch_size=32)
EMB = {"features": "embedding"}  # these synthetic embeddings have no model to decode them with


def test_train_and_predict(cohort, tmp_path):
    s = classify.train(embeddings=cohort / "e.npy", labels=cohort / "labels.tsv", out=tmp_path / "clf", folds=3,
                       repeats=2, fit=FAST, options=EMB)
    assert s.cv["embedding"]["mean_macro_f1"] > 0.9 and len(s.cv["embedding"]["macro_f1"]) == 2
    assert np.sum(s.cv["embedding"]["confusion"]) == 2 * 60  # every sample once per repeat
    assert 0.0 <= s.cv["embedding"]["unassigned_fraction"] < 0.2
    assert "C" in s.table()
    out = classify.predict(model=tmp_path / "clf", embeddings=cohort / "e.npy", output=tmp_path / "p.tsv")
    rows = [ln.split("\t") for ln in out.read_text().splitlines()]
    assert rows[0] == ["sample", "label", "prob_A", "prob_B", "prob_C", "call"]
    assert [r[0] for r in rows[1:]] == [ln.split("\t")[0] for ln in (cohort / "labels.tsv").read_text().splitlines()[1:]]
    probs = np.array([[float(v) for v in r[2:5]] for r in rows[1:]])
    assert np.allclose(probs.sum(1), 1, atol=1e-3)
    assert np.mean([r[1] == r[0][0] for r in rows[1:]]) > 0.9
    assert all(r[5] == ("assigned" if max(map(float, r[2:5])) >= 0.5 else "unassigned") for r in rows[1:])


def test_both_kinds_train_and_predict(cohort, tmp_path):
    import json

    for kind in ("linear", "mlp"):
        s = classify.train(embeddings=cohort / "e.npy", labels=cohort / "labels.tsv", out=tmp_path / kind, folds=3,
                           repeats=1, fit=FAST, options={"kind": kind, **EMB})
        assert s.cv["embedding"]["mean_macro_f1"] > 0.9
        meta = json.loads((tmp_path / kind / "classifier.json").read_text())
        assert meta["config"]["kind"] == kind and (("l2" in meta["fit"]) == (kind == "linear"))
        assert kind != "linear" or meta["fit"]["l2"] in L2_GRID
        del meta["config"]["features"]  # a directory written before the option reads the embedding
        (tmp_path / kind / "classifier.json").write_text(json.dumps(meta))
        out = classify.predict(model=tmp_path / kind, embeddings=cohort / "e.npy", output=tmp_path / f"{kind}.tsv")
        rows = [ln.split("\t") for ln in out.read_text().splitlines()[1:]]
        assert np.mean([r[1] == r[0][0] for r in rows]) > 0.9


def test_a_high_threshold_leaves_samples_unassigned(cohort, tmp_path):
    """Overlapping classes: calibrated probabilities are not all near 1, so a high threshold
    leaves some genomes unassigned."""
    rng = np.random.default_rng(8)
    y = np.repeat(np.arange(3), 20)
    x = (rng.normal(size=(3, 4, 8))[y] * 0.4 + rng.normal(size=(60, 4, 8))).astype(np.float32)
    samples = [f"{'ABC'[c]}{i:02d}" for i, c in enumerate(y)]
    _embeddings(tmp_path / "e.npy", x, samples)
    classify.train(embeddings=tmp_path / "e.npy", labels=cohort / "labels.tsv", out=tmp_path / "clf", folds=3,
                   repeats=1, threshold=0.9, fit=FAST, options=EMB)
    calls = [ln.split("\t")[-1] for ln in classify.predict(model=tmp_path / "clf", embeddings=tmp_path / "e.npy",
                                                            output=tmp_path / "p.tsv").read_text().splitlines()[1:]]
    assert "unassigned" in calls and "assigned" in calls


def test_bad_inputs(cohort, tmp_path):
    kw = dict(embeddings=cohort / "e.npy", folds=3, repeats=1, fit=FAST, options=EMB)
    (tmp_path / "extra.tsv").write_text("sample\tpop\nA00\tA\nZZZ\tB\n")
    with pytest.raises(InputError, match=r"extra.tsv: 1 labelled samples are not in .*\(ZZZ\)"):
        classify.train(labels=tmp_path / "extra.tsv", out=tmp_path / "c1", **kw)
    (tmp_path / "one.tsv").write_text("sample\tpop\nA00\tA\nB20\tA\nC40\tA\n")
    with pytest.raises(InputError, match=r"only one class"):
        classify.train(labels=tmp_path / "one.tsv", out=tmp_path / "c2", **kw)
    with pytest.raises(InputError, match=r"no column 'continent'"):
        classify.train(labels=cohort / "labels.tsv", label_column="continent", out=tmp_path / "c3", **kw)
    classify.train(labels=cohort / "labels.tsv", out=tmp_path / "clf", **kw)
    rng = np.random.default_rng(0)
    other = _embeddings(tmp_path / "other.npy", rng.normal(size=(5, 4, 8)).astype(np.float32),
                        [f"X{i}" for i in range(5)], model="m2")
    with pytest.raises(InputError, match=r"embeddings from model 'm2' .* cannot be mixed with the classifier"):
        classify.predict(model=tmp_path / "clf", embeddings=other, output=tmp_path / "p.tsv")


def test_kinship_groups_relatives(cohort, tmp_path):
    (tmp_path / "k.kin0").write_text("#IID1\tIID2\tNSNP\tHETHET\tIBS0\tKINSHIP\n"
                                     "A00\tA01\t100\t0.1\t0\t0.25\nA02\tB20\t100\t0.1\t0.01\t0.03\n")
    from snpbag.inference.embedout import read_embeddings

    samples = read_embeddings(cohort / "e.npy").samples
    pairs = classify.read_kinship_pairs(tmp_path / "k.kin0", samples, threshold=m.RELATIVE_KINSHIP)
    assert pairs == [(0, 1)]  # 0.03 is below third degree


def test_baselines_run_on_the_same_folds(tmp_path):
    from tiny_data import tiny_store

    store = tiny_store(tmp_path / "d", n_samples=30, n_sites=120, tile_len=64)
    samples = [f"S{i:03d}" for i in range(30)]
    rng = np.random.default_rng(2)
    y = np.arange(30) % 2
    _embeddings(tmp_path / "e.npy", (rng.normal(size=(30, 2, 4)) + y[:, None, None]).astype(np.float32), samples)
    (tmp_path / "l.tsv").write_text("sample\tpop\n" + "".join(f"{s}\t{'AB'[c]}\n" for s, c in zip(samples, y)))
    s = classify.train(embeddings=tmp_path / "e.npy", labels=tmp_path / "l.tsv", out=tmp_path / "clf", folds=3,
                       repeats=1, genotypes=store, fit=FAST, plots=tmp_path / "plots", options=EMB)
    assert set(s.cv) == {"embedding", "pca_lr", "pca_knn", "genotype_lr"}
    assert all(0.0 <= r["mean_macro_f1"] <= 1.0 for r in s.cv.values())
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["confusion.png", "projection.png"]
    w, h = _png_size(tmp_path / "plots" / "confusion.png")
    assert w > 3.5 * h  # four matrices side by side: embedding, PCA + LR, kNN on PCs, LR on genotypes
    pcs, gram = classify.genotype_baselines(store, samples, 5)
    assert pcs.shape == (30, 5) and np.allclose((pcs ** 2).sum(0), 1)
    assert gram.shape == (30, 30) and np.allclose(gram, gram.T)


def test_cli_is_thin():
    from unittest import mock

    from click.testing import CliRunner

    from snpbag.cli import main

    with mock.patch("snpbag.inference.classify.train") as run:
        CliRunner().invoke(main, ["classify", "train", "--embeddings", "E", "--labels", "L", "--out", "D",
                                  "--kinship", "K", "--folds", "4"])
    run.assert_called_once_with(embeddings="E", labels="L", out="D", label_column=None, kinship="K", genotypes=None,
                                folds=4, repeats=3, threshold=0.5, seed=0, plots=None, config=None,
                                embedding_model=None)
    with mock.patch("snpbag.inference.classify.predict") as run:
        CliRunner().invoke(main, ["classify", "predict", "--model", "D", "--embeddings", "E", "--output", "p.tsv"])
    run.assert_called_once_with(model="D", embeddings="E", output="p.tsv", plots=None)


# --- plots ------------------------------------------------------------------------------------


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a valid PNG; fails on anything else (signature, IHDR, decodable)."""
    import struct

    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and data[-8:-4] == b"IEND"
    img = matplotlib.image.imread(path)
    w, h = struct.unpack(">II", data[16:24])
    assert img.shape[:2] == (h, w) and img.std() > 0  # decodes, and is not a blank canvas
    return w, h


def test_plots_of_train_and_predict(cohort, tmp_path):
    classify.train(embeddings=cohort / "e.npy", labels=cohort / "labels.tsv", out=tmp_path / "clf", folds=3,
                   repeats=1, fit=FAST, plots=tmp_path / "plots", options=EMB)
    w, h = _png_size(tmp_path / "plots" / "confusion.png")
    assert w < 2 * h  # no baselines without --genotypes: one matrix
    _png_size(tmp_path / "plots" / "projection.png")
    classify.predict(model=tmp_path / "clf", embeddings=cohort / "e.npy", output=tmp_path / "p.tsv",
                     plots=tmp_path / "pred")
    _png_size(tmp_path / "pred" / "projection.png")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match=r"--plots .*afile: a file, not a directory"):
        classify.train(embeddings=cohort / "e.npy", labels=cohort / "labels.tsv", out=tmp_path / "c2", folds=3,
                       repeats=1, fit=FAST, plots=tmp_path / "afile", options=EMB)
    assert not (tmp_path / "c2").exists()  # refused before any work


def test_projection_names_its_method(monkeypatch):
    import sys
    import types

    from snpbag.eval import plots

    x = np.random.default_rng(0).normal(size=(20, 5))
    monkeypatch.setitem(sys.modules, "umap", None)  # not installed
    xy, method = plots.project2(x)
    assert method == "PCA" and np.allclose(np.abs(xy), np.abs(plots.pca2(x)))
    assert np.allclose(xy.T @ xy, np.diag(np.diag(xy.T @ xy)))  # uncorrelated components
    fake = types.SimpleNamespace(UMAP=lambda **kw: types.SimpleNamespace(fit_transform=lambda a: a[:, :2]))
    monkeypatch.setitem(sys.modules, "umap", fake)
    xy, method = plots.project2(x)
    assert method == "UMAP" and np.array_equal(xy, x[:, :2])


def test_plots_fail_clearly_on_bad_input(tmp_path):
    from snpbag.eval import plots

    x = np.random.default_rng(0).normal(size=(6, 4))
    out = tmp_path / "p.png"
    with pytest.raises(InputError, match="p.png: 5 labels for 6 samples; give one label per sample"):
        plots.projection_png(x, list("AABBC"), out)
    with pytest.raises(InputError, match=r"at least 3 x 2, got shape \(2, 4\)"):
        plots.projection_png(x[:2], ["A", "B"], out)
    bad = x.copy()
    bad[1, 1] = np.nan
    with pytest.raises(InputError, match="NaN or infinite"):
        plots.projection_png(bad, list("AABBCC"), out)
    with pytest.raises(InputError, match=r"confusion matrix of 'e' has shape \(2, 3\), want 3 x 3"):
        plots.confusion_png({"e": np.ones((2, 3))}, list("ABC"), out)
    with pytest.raises(InputError, match="no confusion matrix"):
        plots.confusion_png({}, list("ABC"), out)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing half-written


# --- the config file --------------------------------------------------------------------------


def test_shipped_config_is_the_code_defaults():
    """configs/classify/default.yaml declares what `snpbag classify train` uses; the dataclass
    defaults (Python callers) must say the same, so neither drifts."""
    from dataclasses import fields

    from snpbag.model.popclass import PopClassConfig

    options, fit = classify.read_config()
    assert options == {f.name: f.default for f in fields(PopClassConfig) if f.name not in ("n_inputs", "n_classes")}
    assert fit == classify.Fit()


def test_config_file_sets_the_hyper_parameters(cohort, tmp_path):
    import json

    cfg = tmp_path / "c.yaml"
    cfg.write_text("classifier:\n  kind: mlp\n  features: embedding\n  bottleneck: 5\n  dropout: 0.0\nfit:\n  epochs: 7\n  lr: 0.01\n")
    classify.train(embeddings=cohort / "e.npy", labels=cohort / "labels.tsv", out=tmp_path / "clf", folds=3,
                   repeats=1, config=cfg, seed=4)
    meta = json.loads((tmp_path / "clf" / "classifier.json").read_text())
    assert meta["config"]["kind"] == "mlp" and meta["config"]["bottleneck"] == 5 and meta["config"]["dropout"] == 0.0
    assert meta["config"]["hidden"] == 256
    assert meta["fit"] == {"epochs": 7, "lr": 0.01, "weight_decay": 0.01, "batch_size": 64, "seed": 4}


@pytest.mark.parametrize("text, match", [
    ("classifier:\n  botleneck: 5\n", r"c.yaml: classifier.botleneck is not a setting; known: kind, features, bottl"),
    ("classifier:\n  features: pixels\n", r"c.yaml: classifier features='pixels': choose one of embedding, decoded"),
    ("classifier:\n  kind: mlp\n  features: decoded\n", r"c.yaml: classifier features=decoded kind=mlp: .*set kind: linear"),
    ("fit:\n  epochs: many\n", r"c.yaml: fit.epochs='many': expected a number \(int\)"),
    ("fit:\n  epochs: 2.5\n", r"fit.epochs=2.5: expected a number \(int\)"),
    ("fit:\n  seed: 3\n", r"fit.seed is not a setting"),
    ("model:\n  hidden: 3\n", r"sections classifier, fit only \(found model\)"),
    ("classifier:\n  dropout: 1.5\n", r"c.yaml: classifier dropout=1.5: must be in \[0, 1\)"),
    ("classifier:\n  kind: svm\n", r"c.yaml: classifier kind='svm': choose one of linear, mlp"),
    ("classifier:\n  kind: 3\n", r"c.yaml: classifier.kind=3: expected a word"),
    ("fit:\n  lr: 0\n", r"c.yaml: classifier fit .*lr=0.0.*lr > 0"),
])
def test_bad_config_files_fail_with_one_line(tmp_path, text, match):
    from snpbag.errors import ConfigError

    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=match):
        classify.read_config(tmp_path / "c.yaml")


def test_without_configs_the_defaults_apply(tmp_path, monkeypatch):
    from snpbag import config

    monkeypatch.setattr(config, "__file__", str(tmp_path / "pkg" / "snpbag" / "config.py"))  # no configs/ beside it
    monkeypatch.delenv("SNPBAG_CONFIG_DIR", raising=False)
    assert classify.read_config() == ({}, classify.Fit())


def test_missing_config_file_names_the_flag(tmp_path):
    from snpbag.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--config .*nope.yaml: no such file; start from configs/classify/default"):
        classify.read_config(tmp_path / "nope.yaml")
