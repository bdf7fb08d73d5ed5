"""``classifier.features: decoded``: the decoded features equal the embedding head's own
decoder output (a dense slow reference through PatchEmbeddingHead.reconstruct), a linear model
on the Gram matrix's features equals one on the features themselves, the classifier directory
carries the decoder so predict needs only it and the embeddings (streamed by blocks, equal to
the dense reference), embeddings of another model are refused, bad options fail with one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from snpbag import modeldir
from snpbag.errors import ConfigError, InputError
from snpbag.inference import classify, decoded
from snpbag.inference.embed import embed
from snpbag.inference.embedout import read_embeddings
from test_embed_head import EMBED_TRAIN
from tiny_data import tiny_store

torch.set_num_threads(1)
DECODED = {"features": "decoded"}


def _model(d, store, name, *extra):
    from snpbag.train.export import export
    from snpbag.train.run import train

    run = train([*EMBED_TRAIN, "trainer.max_steps=10", "trainer.val_check_interval=10", f"data.store={store}",
                 f"paths.run_dir={d / ('run_' + name)}", *extra])
    export(run, d / name)
    return d / name


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("decoded")
    store = tiny_store(d, n_samples=30, n_sites=200, tile_len=128)
    _model(d, store, "model")  # decoder=site (configs/task/embed.yaml)
    _model(d, store, "model_mlp", "task.head.options.decoder=mlp")
    embed(model=d / "model", input=store, output=d / "e.zarr", progress=False)
    embed(model=d / "model", input=store, output=d / "e.npy", fmt="npy", progress=False)
    embed(model=d / "model", input=store, output=d / "pooled.npy", fmt="npy", pool="mean", progress=False)
    embed(model=d / "model_mlp", input=store, output=d / "other.npy", fmt="npy", progress=False)
    shutil.copytree(d / "model", d / "moved")  # embeddings whose model is no longer where it was
    embed(model=d / "moved", input=store, output=d / "gone.npy", fmt="npy", progress=False)
    shutil.rmtree(d / "moved")
    samples = read_embeddings(d / "e.zarr").samples
    (d / "labels.tsv").write_text("sample\tpop\n" + "".join(f"{s}\t{'AB'[i % 2]}\n" for i, s in enumerate(samples)))
    return d


def _reference(model_dir, emb) -> np.ndarray:
    """Standardised decoded dosages (N, sites) through the head's own reconstruct(), tile by tile."""
    from snpbag.model.heads.embed import patch_layout

    loaded = modeldir.read(model_dir)
    head, vocab = loaded.model.head, loaded.vocab
    x = torch.as_tensor(emb.matrix(flat=False))  # (N, P, dims)
    n = x.shape[0]
    out, p = [], 0
    for c in range(vocab.n_tiles):
        s = vocab.tile_sites(c)
        length = s.stop - s.start
        valid = torch.ones(n, length, dtype=torch.bool)
        slot, _, n_patches = patch_layout(torch.zeros(n, dtype=torch.long), valid, head.patch)
        e = x[:, p:p + n_patches].reshape(n, n_patches, *head.shape)
        site = torch.arange(s.start, s.stop)[None].expand(n, length)
        with torch.no_grad():
            prob = torch.softmax(head.reconstruct(e, site, slot), -1)  # (N, L, 3)
        out.append((prob[..., 1] + 2 * prob[..., 2]).numpy())
        p += n_patches
    assert p == x.shape[1]
    d = np.concatenate(out, 1).astype(np.float64)
    af = np.clip(head.site_af.numpy().astype(np.float64), 1e-3, 1 - 1e-3)
    return (d - 2 * af) / np.sqrt(2 * af * (1 - af))


def test_decoded_features_equal_the_heads_own_decoder(setup):
    emb = read_embeddings(setup / "e.zarr")
    dec = decoded.Decoder.from_model(setup / "model", emb)
    ref = _reference(setup / "model", emb)
    assert dec.n_sites == ref.shape[1] == int(emb.patches.n_sites.sum())
    rows = np.arange(len(emb.samples))
    parts = list(decoded.blocks(emb, rows, dec, budget=30 * 70))  # a few patches per block
    assert len(parts) > 2 and parts[0][0].start == 0 and parts[-1][0].stop == dec.n_sites
    got = np.concatenate([z for _, z in parts], 1)
    assert np.allclose(got, ref, atol=1e-5)
    assert ref.std() > 0.1  # the decoder does not decode every genome alike
    assert np.allclose(decoded.gram(emb, rows[::2], dec), ref[::2] @ ref[::2].T, atol=1e-6)


def test_a_linear_model_on_gram_features_equals_one_on_the_features():
    """Same penalty, same logits: the weights on the centred features are coef @ (Z - mean)."""
    from snpbag.model.popclass import PopClassConfig, PopClassifier, fit_linear, kernel_features

    rng = np.random.default_rng(0)
    z = torch.as_tensor(rng.normal(size=(40, 300)) + rng.normal(size=(3, 300))[np.arange(40) % 3])
    y = torch.as_tensor(np.arange(40) % 3)
    train, test = torch.arange(30), torch.arange(30, 40)
    f, basis = kernel_features(z @ z.T, train, torch.arange(40))
    assert f.shape[1] <= 29  # centring removes one dimension
    small = PopClassifier(PopClassConfig(n_inputs=f.shape[1], n_classes=3))
    fit_linear(small, f[train].float(), y[train], l2=5.0)
    mean = z[train].mean(0)
    wide = PopClassifier(PopClassConfig(n_inputs=300, n_classes=3))
    fit_linear(wide, (z[train] - mean).float(), y[train], l2=5.0, max_iter=2000)
    with torch.no_grad():
        mine = small(f[test].float())[0]
        assert torch.allclose(mine, wide((z[test] - mean).float())[0], atol=2e-3)
        w = small.linear.weight.double() @ basis.T @ (z[train] - mean)  # (3, 300)
        assert torch.allclose((z[test] - mean) @ w.T + small.linear.bias.double(), mine.double(), atol=1e-4)


def test_train_and_predict_need_only_the_classifier_and_the_embeddings(setup, tmp_path, monkeypatch):
    # train finds the decoder at the model directory the embeddings record (no --embedding-model)
    s = classify.train(embeddings=setup / "e.zarr", labels=setup / "labels.tsv", out=tmp_path / "clf", folds=3,
                       repeats=1, options=DECODED)
    assert set(s.cv) == {"embedding"} and 0.0 <= s.cv["embedding"]["mean_macro_f1"] <= 1.0
    meta = json.loads((tmp_path / "clf" / "classifier.json").read_text())
    assert meta["config"]["features"] == "decoded" and meta["decoder"]["readout_scale"] == 30.0
    assert json.loads((tmp_path / "clf" / "cv.json").read_text())["features"] == "decoded"
    # predict streams blocks of a few patches; the embedding model is gone
    shutil.copytree(setup / "model", tmp_path / "kept")
    shutil.rmtree(setup / "model")
    try:
        monkeypatch.setattr(decoded, "BLOCK_NUMBERS", 30 * 70)
        out = classify.predict(model=tmp_path / "clf", embeddings=setup / "e.npy", output=tmp_path / "p.tsv")
    finally:
        shutil.copytree(tmp_path / "kept", setup / "model")
    rows = [ln.split("\t") for ln in out.read_text().splitlines()]
    assert rows[0] == ["sample", "label", "prob_A", "prob_B", "call"]
    got = np.array([[float(v) for v in r[2:4]] for r in rows[1:]])
    # dense reference: the saved classifier (a linear PopClassifier on decoded dosages) on the
    # head's own decoded dosages
    clf, _ = classify.load_classifier(tmp_path / "clf")
    emb = read_embeddings(setup / "e.npy")
    z = torch.as_tensor(_reference(setup / "model", emb), dtype=torch.float32)
    want = clf.probabilities(z * clf.scale + clf.mean).numpy()
    assert np.allclose(got, want, atol=2e-4)
    assert [r[1] for r in rows[1:]] == [["A", "B"][int(i)] for i in want.argmax(1)]


def test_embeddings_of_another_model_are_refused(setup, tmp_path):
    with pytest.raises(InputError, match=r"other.npy: embeddings from model 'model_mlp' .* cannot be mixed with "
                                         r"--embedding-model .*model from model 'model'"):
        classify.train(embeddings=setup / "other.npy", labels=setup / "labels.tsv", out=tmp_path / "c1", folds=3,
                       repeats=1, options=DECODED, embedding_model=setup / "model")
    classify.train(embeddings=setup / "e.npy", labels=setup / "labels.tsv", out=tmp_path / "c2", folds=3, repeats=1,
                   options=DECODED, embedding_model=setup / "model")
    with pytest.raises(InputError, match=r"other.npy: embeddings from model 'model_mlp' .* cannot be mixed with the "
                                         r"classifier"):
        classify.predict(model=tmp_path / "c2", embeddings=setup / "other.npy", output=tmp_path / "p.tsv")
    assert not (tmp_path / "c1").exists() and not (tmp_path / "p.tsv").exists()


@pytest.mark.parametrize("embeddings, model, match", [
    ("gone.npy", None, r"gone.npy: classifier features: decoded reads the decoder of the model that wrote these "
                       r"embeddings \(recorded at .*moved, not found here\): give --embedding-model DIR"),
    ("pooled.npy", "model", r"pooled.npy: pooled embeddings \(--pool mean\) have no patches to decode"),
    ("other.npy", "model_mlp", r"--embedding-model .*model_mlp: decoder 'mlp' has no per-site readout"),
])
def test_bad_options_fail_with_one_line(setup, tmp_path, embeddings, model, match):
    with pytest.raises(InputError, match=match) as e:
        classify.train(embeddings=setup / embeddings, labels=setup / "labels.tsv", out=tmp_path / "c", folds=3,
                       repeats=1, options=DECODED, embedding_model=setup / model if model else None)
    assert "\n" not in str(e.value) and not (tmp_path / "c").exists()


def test_decoded_trains_the_linear_kind_only():
    from snpbag.model.popclass import PopClassConfig

    with pytest.raises(ConfigError, match=r"features=decoded kind=mlp: .*set kind: linear"):
        PopClassConfig(kind="mlp", features="decoded")
