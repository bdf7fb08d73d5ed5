"""Seq2KING: statistics on synthetic attention with known answers, the inversion split,
the model's attention maps, a tiny end-to-end train + report, the page in a real browser,
and one-line errors for bad inputs."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from click.testing import CliRunner

import chromium
from chromium import requires_chromium
from seq2king_data import synthetic, write_kin0, write_labels
from snpbag.cli import main
from snpbag.errors import ConfigError, InputError, SampleError
from snpbag.kinship.seq2king import baselines, stats
from snpbag.kinship.seq2king.config import PRESETS, make_config
from snpbag.kinship.seq2king.inputs import read_kinship, read_labels, table_columns

pytest.importorskip("scipy")


# --- statistics on synthetic attention ---------------------------------------------------


def _block_attention(G: np.ndarray, same: float, other: float) -> np.ndarray:
    """Row-stochastic attention giving weight ``same`` to same-group keys, ``other`` to others."""
    A = np.where(G[:, :, None] == G[:, None, :], same, other).astype(float)
    for a in A:
        np.fill_diagonal(a, 1.0)
    return A / A.sum(-1, keepdims=True)


def test_connectivity_known_block_structure():
    G = np.array([[0, 0, 0, 1, 1, 1]])
    A = _block_attention(G, 3.0, 1.0)
    assert stats.connectivity_a(A, G) == 100.0
    # b: same-group share of off-diagonal mass is 2*3/(2*3+3*1) = 2/3; uniform gives 2/5
    assert stats.connectivity_b(A, G) == pytest.approx((2 / 3) / (2 / 5))
    assert stats.connectivity_a(_block_attention(G, 1.0, 3.0), G) == 0.0
    # one query (row 0) turned against its group: 5 of 6 queries connect
    B = A.copy()
    B[0, 0] = [0.2, 0.0, 0.0, 0.3, 0.3, 0.2]
    assert stats.connectivity_a(B, G) == pytest.approx(100 * 5 / 6)
    # uniform attention: no query prefers either side (ties do not count), b = 1
    U = np.full((1, 6, 6), 1 / 6)
    assert stats.connectivity_a(U, G) == 0.0 and stats.connectivity_b(U, G) == pytest.approx(1.0)


def test_connectivity_skips_ineligible_queries_and_self():
    G = np.array([[0, 1, 1, 1]])  # query 0 has no same-group key: not eligible
    A = _block_attention(G, 2.0, 1.0)
    A[0, 1:, 1:] += np.eye(3) * 10  # heavy self-attention must not count
    A /= A.sum(-1, keepdims=True)
    assert stats.query_differences(A, G).size == 3
    assert stats.connectivity_a(A, G) == 100.0


def test_permutation_p_is_uniform_under_the_null():
    rng = np.random.default_rng(3)
    ps = []
    for _ in range(300):
        A = rng.dirichlet(np.ones(10), size=(4, 10))
        G = rng.integers(0, 3, size=(4, 10))
        ps.append(stats.permutation_p(A, G, permutations=99, rng=rng))
    ps = np.array(ps)
    assert 0.02 <= (ps <= 0.05).mean() <= 0.10
    assert 0.40 <= (ps <= 0.5).mean() <= 0.60
    assert ps.min() >= 0.01  # (1 + hits) / (1 + 99)


def test_permutation_and_wilcoxon_detect_structure():
    rng = np.random.default_rng(0)
    G = np.repeat([[0, 1, 2]], 8, axis=0).repeat(4, axis=1)  # (8, 12)
    A = _block_attention(G, 1.5, 1.0)
    assert stats.permutation_p(A, G, permutations=199, rng=rng) == pytest.approx(1 / 200)
    assert stats.wilcoxon_p(A, G) < 1e-6
    assert stats.wilcoxon_p(_block_attention(G, 1.0, 1.5), G) > 0.99


def test_invert_and_orientation_choice_reads_calibration_only():
    rng = np.random.default_rng(1)
    K = rng.random((5, 8, 8))
    K = (K + K.transpose(0, 2, 1)) / 2
    A_against = np.exp(-4 * K) / np.exp(-4 * K).sum(-1, keepdims=True)  # attention runs against kinship
    inv = stats.invert(A_against)
    assert np.allclose(inv.sum(-1), 1) and (inv >= 0).all()
    o = stats.choose_orientation(A_against, K)
    assert o.inverted and o.rho < 0
    assert stats.spearman(inv, K) > 0
    assert not stats.choose_orientation(np.exp(4 * K) / np.exp(4 * K).sum(-1, keepdims=True), K).inverted


def test_baselines_are_row_stochastic_and_ignore_self():
    ids, k, cont, _ = synthetic(5)
    pick = np.arange(0, 30, 3)  # both populations of all three continents
    sub = k[None][:, pick][:, :, pick]
    A = baselines.king_attention(sub, temperature=0.05)
    assert np.allclose(A.sum(-1), 1) and np.allclose(np.diagonal(A, axis1=1, axis2=2), 0)
    pcs = baselines.principal_components(k, 4)
    P = baselines.pca_attention(pcs[None, pick])
    assert np.allclose(P.sum(-1), 1)
    _, G = stats.encode_groups(cont[None, pick])
    assert stats.connectivity_a(A, G) == 100.0 and stats.connectivity_a(P, G) == 100.0


# --- config, inputs -----------------------------------------------------------------------


def test_paper_preset_is_the_original_shape():
    c = make_config("seq2king_paper")
    assert (c.tokens, c.n_encoder, c.n_decoder, c.n_heads, c.d_model, c.d_ff, c.activation, c.normalise,
            c.min_len, c.max_len) == ("id", 3, 2, 1, 120, 512, "tanh", "minmax", 2, 100)
    assert set(PRESETS) >= {"seq2king_paper"}
    assert make_config("small", ["steps=7", "tokens=id"]).steps == 7
    with pytest.raises(ConfigError, match="'stepz' is not a setting"):
        make_config("small", ["stepz=7"])
    with pytest.raises(ConfigError, match="tokens='word'"):
        make_config("small", ["tokens=word"])
    with pytest.raises(ConfigError, match="expected a number"):
        make_config("small", ["steps=many"])


def test_kin0_and_matrix_inputs_agree(tmp_path):
    from snpbag.kinship.matrix import create_matrix

    ids, k, _, _ = synthetic(3)
    t = read_kinship(write_kin0(tmp_path / "a.kin0", ids, k))
    z = create_matrix(tmp_path / "a.king.zarr", ids.tolist(), attrs={})
    z[:] = k.astype(np.float32)
    m = read_kinship(tmp_path / "a.king.zarr")
    assert t.ids.tolist() == ids.tolist() == m.ids.tolist()
    assert np.allclose(t.matrix, m.matrix, atol=1e-6) and np.allclose(np.diag(t.matrix), 0.5)


# --- the model ----------------------------------------------------------------------------


@pytest.mark.parametrize("tokens", ["id", "features"])
def test_attention_maps_are_row_stochastic(tokens):
    import torch

    from snpbag.kinship.seq2king.model import Seq2King, layer_names

    cfg = make_config("small", {"tokens": tokens, "n_heads": 4})
    model = Seq2King(cfg, n_individuals=30, n_inputs=16).eval()
    pad = torch.zeros(3, 9, dtype=torch.bool)
    pad[1, 6:] = True
    tok = torch.randint(0, 30, (3, 9)) if tokens == "id" else torch.rand(3, 9, 16)
    pred, attn, states = model(tok, pad, return_attn=True)
    assert pred.shape == (3, 9, 9) and torch.allclose(pred, pred.transpose(1, 2))
    assert list(attn) == layer_names(cfg) == ["enc1", "enc2", "dec1.self", "dec1.cross"]
    for w in attn.values():
        assert w.shape == (3, 4, 9, 9)
        assert torch.allclose(w.sum(-1), torch.ones(3, 4, 9), atol=1e-5)
        assert (w[1, :, :, 6:] == 0).all()  # padding gets no attention
    assert torch.equal(model(tok, pad), pred)


def test_targets_normalisation_and_padding_mask():
    import torch

    from snpbag.kinship.seq2king.model import masked_mse
    from snpbag.kinship.seq2king.sentences import Normaliser, targets

    _, k, _, _ = synthetic(4)
    mm = Normaliser.fit(k, "minmax")(k)
    assert mm.min() == 0.0 and mm.max() == 1.0  # global min-max, diagonal included (the original)
    z = Normaliser.fit(k, "zscore")(k)[~np.eye(len(k), dtype=bool)]
    assert z.mean() == pytest.approx(0, abs=1e-12) and z.std() == pytest.approx(1)
    sent = np.array([[0, 3, 5], [2, 7, -1]])
    t = targets(mm, sent)
    assert t[0, 1, 2] == mm[3, 5] and (t[1, 2] == 0).all() and (t[1, :, 2] == 0).all()
    # padding and the diagonal never enter the loss: changing them changes nothing
    pad = torch.from_numpy(sent < 0)
    pred, target = torch.rand(2, 3, 3), torch.from_numpy(t).float()
    moved = pred.clone()
    moved[1, 2, :] += 5
    moved[1, :, 2] -= 5
    moved[:, [0, 1, 2], [0, 1, 2]] += 7
    assert masked_mse(moved, target, pad) == masked_mse(pred, target, pad)
    assert masked_mse(pred + 1, target, pad) != masked_mse(pred, target, pad)


def test_training_never_reads_labels():
    from snpbag.kinship.seq2king import train

    tree = ast.parse(Path(train.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert "read_labels" not in names and "Labels" not in names


# --- end to end ---------------------------------------------------------------------------


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("s2k")
    ids, k, cont, pop = synthetic(10)
    full = write_kin0(d / "all.kin0", ids, k)
    keep = np.arange(len(ids)) % 6 != 5  # one in six individuals is new to the model
    part = write_kin0(d / "part.kin0", ids[keep], k[np.ix_(keep, keep)])
    labels = write_labels(d / "labels.tsv", ids, cont, pop)
    return d, full, part, labels


@pytest.fixture(scope="module")
def features_report(cohort):
    d, full, part, labels = cohort
    model = d / "model_features"
    r = _cli("seq2king", "train", "--kinship", part, "--out", model, "--preset", "small", "--tokens", "features",
             "steps=200")
    assert r.exit_code == 0, r.output
    out = d / "report_features"
    r = _cli("seq2king", "report", "--model", model, "--kinship", full, "--labels", labels, "--out", out,
             "--sentences", 6, "--sentence-len", 12, "--permutations", 50)
    assert r.exit_code == 0, r.output
    return out


def test_features_model_learns_and_places_new_people(cohort, features_report):
    import json

    record = json.loads((cohort[0] / "model_features" / "seq2king.json").read_text())["record"]
    assert record["held_out_loss"] < 0.5 * record["held_out_constant_loss"]  # structure, not the mean


def test_report_writes_every_file(features_report):
    import csv
    import json

    names = {p.name for p in features_report.iterdir()}
    layers = ["enc1", "enc2", "dec1-self", "dec1-cross"]
    assert names >= {"connectivity.csv", "connectivity.md", "summary.json", "index.html", "heatmap_kinship.png",
                     *(f"heatmap_{n}.png" for n in layers), "projection_enc1.png", "projection_dec1-self.png"}
    rows = list(csv.DictReader(open(features_report / "connectivity.csv")))
    assert list(rows[0])[:5] == ["layer", "head", "inverted", "connectivity", "p_permutation"]
    # 4 layers x 2 heads x 2 orientations + 2 baselines, at two levels
    assert len(rows) == 2 * (4 * 2 * 2 + 2)
    assert {r["level"] for r in rows} == {"continent", "population"}
    for r in rows:
        assert 0 <= float(r["connectivity"]) <= 100 and 0 < float(r["p_permutation"]) <= 1
    info = json.loads((features_report / "summary.json").read_text())
    assert info["tokens"] == "features (anchors)" and info["new_individuals"] == 10  # placed without retraining
    html = (features_report / "index.html").read_text()
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
    assert html.count("data:image/png;base64,") == 1 + 4 + 3


def test_id_tokens_report(cohort):
    d, full, _, labels = cohort
    model = d / "model_id"
    assert _cli("seq2king", "train", "--kinship", full, "--out", model, "--preset", "small", "--tokens", "id",
                "steps=20").exit_code == 0
    out = d / "report_id"
    r = _cli("seq2king", "report", "--model", model, "--kinship", full, "--labels", labels, "--out", out,
             "--sentences", 4, "--sentence-len", 10, "--permutations", 20)
    assert r.exit_code == 0, r.output
    assert '"tokens": "id"' in (out / "summary.json").read_text()


def test_orientation_never_sees_the_evaluation_split(cohort, tmp_path):
    from snpbag.kinship.seq2king import report

    d, full, part, labels = cohort
    model = tmp_path / "m"
    _cli("seq2king", "train", "--kinship", part, "--out", model, "--preset", "small", "steps=5")
    seen, collected = [], []
    real_choose, real_collect = report.choose_orientation, report.collect

    def spy_collect(model_, sentences, **kw):
        collected.append(sentences.copy())
        return real_collect(model_, sentences, **kw)

    def spy_choose(A, K):
        seen.append(K.copy())
        return real_choose(A, K)

    with mock.patch.object(report, "collect", spy_collect), mock.patch.object(report, "choose_orientation", spy_choose):
        report.analyse(model, full, labels, sentences=4, sentence_len=8, permutations=5)
    calibration, evaluation = collected[0], collected[1]
    assert not set(calibration.ravel()) & set(evaluation.ravel())  # disjoint individuals
    kin = read_kinship(full)
    cal_kin = kin.matrix[calibration[:, :, None], calibration[:, None, :]]
    assert len(seen) == 4 * 2 and all(np.array_equal(k, cal_kin) for k in seen)


@requires_chromium
def test_page_renders_in_headless_chromium(features_report, tmp_path):
    dom, _ = chromium.dump_dom(features_report / "index.html", tmp_path)
    status = re.search(r'id="hv-status"[^>]*data-layers="(\d+)"[^>]*data-heads="(\d+)"', dom)
    assert status, "head view did not render: " + dom[-500:]
    assert (int(status[1]), int(status[2])) == (4, 2)
    assert len(re.findall(r"<option ", dom)) == 4
    assert len(re.findall(r'class="head-swatch', dom)) == 2
    assert re.search(r'<pre id="js-errors"></pre>', dom), "page reported JavaScript errors"
    assert dom.count("<line ") > 10
    shot = chromium.screenshot(features_report / "index.html", tmp_path)
    assert shot.stat().st_size > 10_000
    kept = chromium.keep(shot, "seq2king_report.png")  # the test artefact a person can look at
    assert kept.read_bytes() == shot.read_bytes()


# --- bad inputs: one line, exit 2 ---------------------------------------------------------


def _one_line_error(args, match):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and re.search(match, lines[0]), r.output


def test_kin0_without_kinship_column(tmp_path):
    ids, k, _, _ = synthetic(3)
    bad = write_kin0(tmp_path / "x.kin0", ids, k, kinship_column="PHI")
    _one_line_error(["seq2king", "train", "--kinship", bad, "--out", tmp_path / "m", "--preset", "small"],
                    r"x\.kin0: no KINSHIP column.*snpbag king")


def test_kin0_with_missing_pairs(tmp_path):
    ids, k, _, _ = synthetic(3)
    path = write_kin0(tmp_path / "x.kin0", ids, k)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(InputError, match="pair\\(s\\) missing.*without --min-kinship"):
        read_kinship(path)


def test_matrix_with_nan_rows(tmp_path):
    from snpbag.kinship.matrix import create_matrix

    ids, k, _, _ = synthetic(3)
    z = create_matrix(tmp_path / "x.king.zarr", ids.tolist(), attrs={})
    z[:10] = k[:10].astype(np.float32)  # rows 10.. stay NaN: an interrupted run
    _one_line_error(["seq2king", "train", "--kinship", tmp_path / "x.king.zarr", "--out", tmp_path / "m"],
                    r"x\.king\.zarr: \d+ row\(s\) contain NaN.*rerun `snpbag king --matrix`")


def test_labels_missing_and_one_group(tmp_path, cohort, features_report):
    d, full, _, _ = cohort
    ids, k, cont, pop = synthetic(10)
    missing = write_labels(tmp_path / "l.tsv", ids[:-3], cont[:-3], pop[:-3])
    with pytest.raises(SampleError, match=r"l\.tsv: 3 of 6 individuals have no label"):
        read_labels(missing, ids[-6:])
    one = write_labels(tmp_path / "one.tsv", ids, np.full(len(ids), "EUR"), pop)
    with pytest.raises(SampleError, match="one continent only"):
        read_labels(one, ids)
    report = ["seq2king", "report", "--model", d / "model_features", "--kinship", full, "--out", tmp_path / "r"]
    _one_line_error(report + ["--labels", missing], r"l\.tsv: \d+ of \d+ individuals have no label.*add a line")
    _one_line_error(report + ["--labels", one], r"one\.tsv: one continent only \('EUR'\).*label at least two")
    assert not (tmp_path / "r").exists()  # no half-written report
    _one_line_error(["seq2king", "report", "--model", tmp_path / "nomodel", "--kinship", full, "--labels", one,
                     "--out", tmp_path / "r"], r"not a Seq2KING model directory")


def test_one_group_in_sentences_is_refused():
    A = np.full((2, 4, 4), 0.25)
    with pytest.raises(SampleError, match="one group only"):
        stats.score(A, np.zeros((2, 4), dtype=int), permutations=3, rng=np.random.default_rng(0))


def test_cli_commands_call_one_function(tmp_path):
    with mock.patch("snpbag.kinship.seq2king.report.report") as rep:
        _cli("seq2king", "report", "--model", "M", "--kinship", "K.kin0", "--labels", "L.tsv", "--out", "R")
    rep.assert_called_once_with("M", kinship="K.kin0", labels="L.tsv", out="R", sentences=50, sentence_len=60,
                                permutations=1000, seed=0, overwrite=False, kinship_column=None, embeddings=None)
    with mock.patch("snpbag.kinship.seq2king.train.train") as tr:
        _cli("seq2king", "train", "--kinship", "K.kin0", "--out", "M", "steps=3")
    tr.assert_called_once_with("K.kin0", out="M", config=make_config("seq2king_paper", ["steps=3"]), overwrite=False,
                               kinship_column="KINSHIP", embeddings=None)


def test_hydra_task_seq2king_runs_the_same_training(tmp_path):
    import dataclasses

    import yaml

    from snpbag.config import config_dir
    from snpbag.inference.seq2king import INPUT_KEYS

    task = yaml.safe_load((config_dir() / "task" / "seq2king.yaml").read_text())
    paper = make_config("seq2king_paper")
    assert {k: v for k, v in task.items() if k not in INPUT_KEYS} == dataclasses.asdict(paper)
    with mock.patch("snpbag.kinship.seq2king.train.train") as tr:
        _cli("train", "task=seq2king", "task.kinship=K.kin0", "task.out=M", "task.steps=3", "task.tokens=features")
    tr.assert_called_once_with("K.kin0", out="M", config=make_config("seq2king_paper", ["steps=3", "tokens=features"]),
                               overwrite=False, kinship_column="KINSHIP", embeddings=None)
    base = ["train", "task=seq2king", "task.kinship=K.kin0", "task.out=M"]
    _one_line_error(base + ["task.stepz=3"], r"task=seq2king: Could not override 'task.stepz'")
    _one_line_error(["train", "task=seq2king", "task.steps=3"], r"task=seq2king: give task.kinship=\.\.\. task.out=\.\.\.")
    _one_line_error(base + ["task.tokens=word"], r"seq2king tokens='word': choose one of id, features")


# --- the relatedness head's expected kinship as input (snpbag relate's PREFIX.rel) -------------


def write_rel(path: Path, ids, king, expected) -> Path:
    """A tiny PREFIX.rel of every pair: `snpbag relate`'s columns, KINSHIP and EXP_KINSHIP filled."""
    from snpbag.inference.reltable import columns

    head = columns(2)
    lines = ["\t".join(head)]
    for i in range(len(ids)):
        for j in range(i):
            row = dict.fromkeys(head, "0.1")
            row.update({"#IID1": ids[i], "IID2": ids[j], "KINSHIP": f"{king[i, j]:.6g}",
                        "EXP_KINSHIP": f"{expected[i, j]:.6f}"})
            lines.append("\t".join(row[c] for c in head))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_relate_table_feeds_seq2king_with_either_column(tmp_path):
    import csv
    import json

    from snpbag.kinship.matrix import create_matrix

    ids, k, cont, pop = synthetic(8)
    exp = np.clip(k, 0, None) * 0.5 + np.random.default_rng(1).uniform(0, 0.01, k.shape)
    exp = (exp + exp.T) / 2
    rel = write_rel(tmp_path / "c.rel", ids, k, exp)
    off = ~np.eye(len(ids), dtype=bool)
    assert np.allclose(read_kinship(rel).matrix[off], k[off], atol=1e-5)
    e = read_kinship(rel, column="EXP_KINSHIP")
    assert e.column == "EXP_KINSHIP" and np.allclose(e.matrix[off], exp[off], atol=1e-6)
    with pytest.raises(InputError, match=r"a\.kin0: no EXP_KINSHIP column.*PREFIX\.rel of `snpbag relate`"):
        read_kinship(write_kin0(tmp_path / "a.kin0", ids, k), column="EXP_KINSHIP")
    create_matrix(tmp_path / "m.king.zarr", ids.tolist(), attrs={})[:] = k.astype(np.float32)
    with pytest.raises(InputError, match="--kinship-column EXP_KINSHIP: .*m.king.zarr is a kinship matrix"):
        read_kinship(tmp_path / "m.king.zarr", column="EXP_KINSHIP")
    with pytest.raises(InputError, match="--kinship-column PHI: choose one of KINSHIP, EXP_KINSHIP"):
        read_kinship(rel, column="PHI")
    # trained on EXP_KINSHIP; the report says so and compares the table's KINSHIP column
    labels = write_labels(tmp_path / "labels.tsv", ids, cont, pop)
    model, out = tmp_path / "model", tmp_path / "report"
    assert _cli("seq2king", "train", "--kinship", rel, "--kinship-column", "EXP_KINSHIP", "--out", model,
                "--preset", "small", "--tokens", "id", "steps=5").exit_code == 0
    r = _cli("seq2king", "report", "--model", model, "--kinship", rel, "--labels", labels, "--out", out,
             "--sentences", 3, "--sentence-len", 8, "--permutations", 10)
    assert r.exit_code == 0, r.output
    info = json.loads((out / "summary.json").read_text())
    assert info["kinship_column"] == "EXP_KINSHIP" and info["trained_on"]["column"] == "EXP_KINSHIP"
    held = [list(ids).index(s) for s in json.loads((model / "seq2king.json").read_text())["held_out"]]
    sub = ~np.eye(len(held), dtype=bool)
    want = np.abs(k[np.ix_(held, held)][sub] - exp[np.ix_(held, held)][sub]).mean()
    assert info["kinship_compared"]["KINSHIP"]["mean_abs_difference"] == pytest.approx(want, abs=1e-5)
    assert -1 <= info["kinship_compared"]["KINSHIP"]["spearman"] <= 1
    layers = {row["layer"] for row in csv.DictReader(open(out / "connectivity.csv"))}
    assert {"king_softmax", "king_softmax[KINSHIP]", "pca_distance"} <= layers
    assert "column EXP_KINSHIP" in (out / "index.html").read_text()
    _one_line_error(["seq2king", "report", "--model", model, "--kinship", rel, "--labels", labels, "--out",
                     tmp_path / "r2", "--kinship-column", "KINSHIP"],
                    r"--kinship-column KINSHIP: the model was trained on EXP_KINSHIP")
    # a .kin0 or a matrix has KING's column only: nothing to compare
    assert table_columns(tmp_path / "a.kin0") == ["KINSHIP"] and table_columns(tmp_path / "m.king.zarr") == []
    assert table_columns(rel) == ["KINSHIP", "EXP_KINSHIP"]
