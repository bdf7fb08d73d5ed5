"""``snpbag relate``: a tiny classifier trained on simulated pedigrees learns degrees; its table; bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from snpbag.cli import main
from snpbag.errors import CheckpointError, InputError, SampleError
from snpbag.eval.relate import UNRELATED, degree_accuracy
from snpbag.inference import embedout, relate as rel, reltable
from snpbag.inference.relateersa import king_threshold_degrees
from snpbag.model.relate import RelateConfig, RelateNet, class_names, embedding_pair_features, fit_temperature
from snpbag.simulate import cohort as sm

PATCH = 64


@pytest.fixture(scope="module")
def sims(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(training pedigrees, held-out pedigrees with other founders, trained model)."""
    root = tmp_path_factory.mktemp("relate")
    train, test = root / "train", root / "test"
    sm.simulate(train, length=300_000, pedigree=3, chromosomes=4, seed=11, founder_map="physical")
    sm.simulate(test, length=300_000, pedigree=2, chromosomes=4, seed=12, founder_map="physical")
    model = root / "model"
    rel.train(pedigree=[train], out=model, max_degree=6, patch_sites=PATCH, fit=rel.Fit(epochs=60, seed=0))
    return train, test, model


def test_training_learns_degrees_on_held_out_families(sims):
    _, test, model = sims
    net, meta = rel.load(model)
    assert meta["classes"] == class_names(6) == ["PO", "FS", "2", "3", "4", "5", "6", "UN"]
    data = rel.pedigree_pairs(test, max_degree=6, patch_sites=PATCH, unrelated_per_related=1.0, seed=3)
    acc, chance = trained_and_blind_accuracy(net, data)
    assert acc["1"]["exact"] >= 0.9 and acc["2"]["within1"] >= 0.4 and acc["UN"]["exact"] >= 0.8
    mean = lambda a: np.mean([v["exact"] for v in a.values()])  # noqa: E731
    assert mean(acc) > mean(chance) + 0.1


def trained_and_blind_accuracy(net: RelateNet, data, patch: int = PATCH, max_degree: int = 6) -> tuple[dict, dict]:
    """Per-degree accuracy of ``net`` and of the same network with its class readers
    re-initialised (an untrained network of the same shape: chance on the same pairs)."""
    truth = rel.degrees_of_classes(data.y, max_degree)
    acc = degree_accuracy(truth, rel.called_degrees(net, data, patch))
    torch.manual_seed(0)
    blind = RelateNet(net.cfg)
    blind.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith(("degree.", "subtype."))},
                          strict=False)
    return acc, degree_accuracy(truth, rel.called_degrees(blind.eval(), data, patch))


def test_pair_order_does_not_change_the_output(sims):
    _, test, model = sims
    net, _ = rel.load(model)
    data = rel.pedigree_pairs(test, max_degree=6, patch_sites=PATCH, unrelated_per_related=0.2, seed=3)
    swapped = rel.PairData(data.ids, data.pairs[:, ::-1].copy(),
                           data.counts[..., [0, 1, 3, 2, 4]].copy(), data.variants)
    for a, b in zip(rel.predict_proba(net, data, PATCH), rel.predict_proba(net, swapped, PATCH)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_relate_table_columns_and_calls(sims, tmp_path):
    train, _, model = sims
    r = CliRunner().invoke(main, ["relate", "--model", str(model), "--input", str(train / "pedigree.vcf.gz"),
                                  "--out", str(tmp_path / "all"), "--genetic-map", str(train), "--prefilter", "none",
                                  "--no-relatives"])
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "all.rel").read_text().splitlines()
    log_lines = dict(x.split("\t") for x in (tmp_path / "all.rel.log").read_text().splitlines())
    assert log_lines["prefilter"] == "none" and int(log_lines["pairs_scored"]) == len(lines) - 1
    head = lines[0].split("\t")
    assert head == reltable.columns(6, segments=True) and head[-4:] == ["SEGMENTS", "SHARED_CM", "PAIR_DEGREE", "VIA"]
    assert log_lines["segments"] == "hap" and log_lines["background"] == "pooled"  # phased input, no populations
    assert head[:6] == ["#IID1", "IID2", "NSNP", "HETHET", "IBS0", "KINSHIP"] and "EXP_KINSHIP" in head
    n = 3 * 36
    assert len(lines) == 1 + n * (n - 1) // 2
    rows = rows_all = [dict(zip(head, line.split("\t"))) for line in lines[1:]]
    assert all(x["PAIR_DEGREE"] == x["DEGREE"] and x["VIA"] == "." for x in rows)  # --no-relatives
    order = {frozenset((x["#IID1"], x["IID2"])): k for k, x in enumerate(rows)}
    probs = np.array([[float(x[f"P_{d}"]) for d in [*range(1, 7), "UN"]] for x in rows])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-3)
    conf = np.array([float(x["CONFIDENCE"]) for x in rows])
    np.testing.assert_allclose(conf, probs.max(1), atol=1e-4)
    # top-3: distinct degrees, most probable first, each with its P_ column's probability
    names = [*map(str, range(1, 7)), "UN"]
    for x, pr in zip(rows, probs):
        top = [x[f"TOP{k}"] for k in (1, 2, 3)]
        ptop = [float(x[f"P_TOP{k}"]) for k in (1, 2, 3)]
        assert top[0] == x["DEGREE"] and len(set(top)) == 3 and ptop == sorted(ptop, reverse=True)
        assert ptop == [float(x[f"P_{t}"]) for t in top] and ptop[0] == float(x["CONFIDENCE"])
        assert ptop[2] >= np.sort(pr)[-3] - 1e-4 and set(top) <= set(names)
    # degree-2 type: probabilities given degree 2 sum to 1; named only for pairs called degree 2; the classifier
    # scores only the pairs called degree 1 or 2 (NA beyond)
    close = [x for x in rows if x["DEGREE"] in ("1", "2")]
    assert close and len(close) < len(rows)
    assert all(x[c] == "NA" for x in rows if x not in close for c in ("P_PO", "P_HS", "P_GP", "P_AV"))
    typ = np.array([[float(x[f"P_{t}"]) for t in ("HS", "GP", "AV")] for x in close])
    np.testing.assert_allclose(typ.sum(1), 1.0, atol=2e-4)
    assert head[head.index("P_PO") + 1:head.index("P_PO") + 5] == ["D2_TYPE", "P_HS", "P_GP", "P_AV"]
    for x, q in zip(close, typ):
        assert x["D2_TYPE"] == (["HS", "GP", "AV"][int(q.argmax())] if x["DEGREE"] == "2" else "NA")
    assert all(x["D2_TYPE"] == "NA" for x in rows if x not in close)
    # pairs in KING's degree 1-3 ranges carry the stored share of each true degree among the training pairs there
    table = np.array(rel.load(model)[1]["segments"]["king_table"])
    king_bin = king_threshold_degrees(np.array([float(x["KINSHIP"]) for x in rows]))
    close = (king_bin >= 1) & (king_bin <= 3)
    assert close.any() and (~close).any()
    np.testing.assert_allclose(probs[close], table[king_bin[close] - 1], atol=1e-4)
    kin = np.array([float(x["EXP_KINSHIP"]) for x in rows])
    assert ((kin >= 0) & (kin <= 0.25)).all()
    po = next(x for x in rows if {x["#IID1"], x["IID2"]} == {"F0001_P", "F0001_A1"})
    assert po["DEGREE"] == "1" and po["PO_FS"] == "PO" and float(po["EXP_KINSHIP"]) > 0.2
    # parent–offspring vs full siblings by opposite homozygotes, as `snpbag king --po-ibs0 auto` calls them (on
    # this tiny genome, 2,725 SNPs, some full siblings show too few IBS0 sites to be told: PO for both)
    from snpbag.kinship.king import king

    king(train / "pedigree.vcf.gz", out=tmp_path / "k_auto", po_ibs0="auto")
    kin0 = [x.split("\t") for x in (tmp_path / "k_auto.kin0").read_text().splitlines()]
    inftype = {frozenset(x[:2]): x[kin0[0].index("INFTYPE")] for x in kin0[1:]}
    first = [x for x in rows if x["DEGREE"] == "1" and inftype[frozenset((x["#IID1"], x["IID2"]))] in ("PO", "FS")]
    assert len(first) > 100 and {x["PO_FS"] for x in first} == {"PO", "FS"}
    assert all(x["PO_FS"] == inftype[frozenset((x["#IID1"], x["IID2"]))] for x in first)
    assert all((x["PO_FS"] == "PO") == (float(x["P_PO"]) >= 0.5) for x in first)
    un = next(x for x in rows if {x["#IID1"], x["IID2"]} == {"F0001_P", "F0002_P"})
    assert un["DEGREE"] == "UN" and un["PO_FS"] == "NA"
    # --max-degree keeps the close calls only; --pairs restricts the pairs
    rel.relate(model=model, genetic_map=train, input=train / "pedigree.vcf.gz", out=tmp_path / "close", max_degree=1,
               relatives=False)
    assert {x.split("\t")[6] for x in (tmp_path / "close.rel").read_text().splitlines()[1:]} == {"1"}
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("#IID1\tIID2\nF0001_P\tF0001_A1\nF0002_M\tF0001_B1\n")
    assert rel.relate(model=model, genetic_map=train, input=train / "pedigree.vcf.gz", out=tmp_path / "two",
                      pairs=pairs).written == 2
    # --min-kinship scores exactly the pairs `snpbag king --min-kinship` lists, and nothing else
    from snpbag.kinship.king import king

    king(train / "pedigree.vcf.gz", out=tmp_path / "k", min_kinship=0.06)
    want = {frozenset(x.split("\t")[:2]) for x in (tmp_path / "k.kin0").read_text().splitlines()[1:]}
    got = rel.relate(model=model, genetic_map=train, input=train / "pedigree.vcf.gz", out=tmp_path / "pre",
                     min_kinship=0.06, relatives=False)
    rows = (tmp_path / "pre.rel").read_text().splitlines()[1:]
    assert got.pairs == len(want) > 0 and {frozenset(x.split("\t")[:2]) for x in rows} == want
    assert "KING kinship >= 0.06" in (tmp_path / "pre.rel.log").read_text()
    # the segment prefilter (auto on this phased input): the all-pairs rows of the pairs sharing a seed (these
    # founders share long stretches by chance: at 40 cM some pairs drop) or in KING's degree 1-3 range
    got = rel.relate(model=model, genetic_map=train, input=train / "pedigree.vcf.gz", out=tmp_path / "seg",
                     seed_cm=40.0, relatives=False)
    seg = {frozenset(x.split("\t")[:2]): x for x in (tmp_path / "seg.rel").read_text().splitlines()[1:]}
    every = {frozenset((x["#IID1"], x["IID2"])): x for x in rows_all}
    assert 0 < got.pairs == len(seg) < len(every) and all(line == lines[1:][order[p]] for p, line in seg.items())
    close = {p for p, x in every.items() if float(x["KINSHIP"]) >= 0.0442}
    assert close and close <= set(seg)
    assert (tmp_path / "seg.rel.log").read_text().count("segments: a haplotype seed >= 40 cM") == 1
    assert not list(tmp_path.glob(".relate-*"))  # the prefilter's table is not left behind


def test_prefilter_combinations_are_refused_with_one_line(sims, tmp_path):
    train, _, model = sims
    vcf, pairs = train / "pedigree.vcf.gz", tmp_path / "p.txt"
    pairs.write_text("F0001_P F0001_M\n")
    for kw, match in ((dict(prefilter="king"), "--prefilter king: give the cut with --min-kinship"),
                      (dict(prefilter="none", min_kinship=0.1), "--prefilter none scores every pair"),
                      (dict(prefilter="segments", pairs=pairs), "--pairs and --prefilter segments both choose"),
                      (dict(prefilter="ersa"), "--prefilter 'ersa': choose one of auto, segments, king, none"),
                      (dict(seed_cm=0.0), "--seed-cm 0.0: give a seed length above 0 cM"),
                      (dict(prefilter="segments", segments="ibs0"), "--prefilter segments finds shared haplotype")):
        with pytest.raises(InputError, match=match):
            rel.relate(model=model, genetic_map=train, input=vcf, out=tmp_path / "o", **kw)
    assert not list(tmp_path.glob("o.rel*"))


def test_bad_inputs_fail_with_one_line(sims, tmp_path):
    train, _, model = sims
    vcf = train / "pedigree.vcf.gz"
    bad = tmp_path / "p.txt"
    bad.write_text("F0001_P\tnobody\n")
    with pytest.raises(InputError, match="sample 'nobody' is not in the input"):
        rel.relate(model=model, genetic_map=train, input=vcf, out=tmp_path / "o1", pairs=bad)
    bad.write_text("F0001_P F0001_M\nF0001_M F0001_P\n")
    with pytest.raises(InputError, match="listed twice"):
        rel.relate(model=model, genetic_map=train, input=vcf, out=tmp_path / "o2", pairs=bad)
    with pytest.raises(CheckpointError, match="not a relate directory"):
        rel.relate(model=tmp_path, input=vcf, out=tmp_path / "o3")
    with pytest.raises(InputError, match="--max-degree 9: the model calls degrees 1..6"):
        rel.relate(model=model, genetic_map=train, input=vcf, out=tmp_path / "o4", max_degree=9)
    with pytest.raises(InputError, match="not a pedigree simulation"):
        rel.train(pedigree=[tmp_path], out=tmp_path / "m")
    # one chromosome of a model trained on four: too little evidence
    import gzip

    lines = gzip.open(vcf, "rt").read().splitlines(keepends=True)
    first = next(line.split("\t")[0] for line in lines if not line.startswith("#"))
    one = tmp_path / "one.vcf"
    one.write_text("".join(x for x in lines if x.startswith("#") or x.split("\t")[0] == first))
    with pytest.raises(InputError, match="a single chromosome"):
        rel.relate(model=model, genetic_map=train, input=one, out=tmp_path / "o5")
    with pytest.raises(InputError, match="--pairs and --min-kinship both choose the pairs"):
        rel.relate(model=model, genetic_map=train, input=vcf, out=tmp_path / "o7", pairs=bad, min_kinship=0.1)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="--device cuda: no CUDA device"):
            rel.relate(model=model, genetic_map=train, input=vcf, out=tmp_path / "o8", device="cuda")
    (tmp_path / "o9.rel").write_text("precious")
    with pytest.raises(InputError, match="o9.rel: output already exists"):
        rel.relate(model=model, genetic_map=train, input=vcf, out=tmp_path / "o9")
    assert (tmp_path / "o9.rel").read_text() == "precious" and not (tmp_path / "o9.rel.log").exists()
    # a sample listed twice in the input: its pairs could not be told apart
    dup = tmp_path / "dup.vcf"
    text = [x.split("\t") if x.startswith("#CHROM") else x for x in lines[:200]]
    head = next(x for x in text if isinstance(x, list))
    head[10] = head[9]
    dup.write_text("".join("\t".join(x) if isinstance(x, list) else x for x in text))
    with pytest.raises(SampleError, match=f"duplicated sample ids \\({head[9]}\\)"):
        rel.relate(model=model, genetic_map=train, input=dup, out=tmp_path / "o10")
    # embeddings (of whichever model) in place of genotypes: this model reads genotypes
    emb = tmp_path / "emb.zarr"
    emb.mkdir()
    (emb / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {
        "format": embedout.FORMAT, "version": embedout.VERSION, "model": {"name": "other_model"}}}))
    with pytest.raises(InputError, match="--input .*emb.zarr: embeddings of model 'other_model'; this relate model "
                                         "reads genotypes"):
        rel.relate(model=model, genetic_map=train, input=emb, out=tmp_path / "o11")
    assert not list(tmp_path.glob("o1*.rel*"))
    r = CliRunner().invoke(main, ["relate", "--model", str(model), "--input", str(vcf), "--out",
                                  str(tmp_path / "o6"), "--pairs", str(bad), "--genetic-map", str(train)])
    assert r.exit_code != 0 and "listed twice" in r.output and len(r.output.strip().splitlines()) == 1


def test_temperature_fit_and_embedding_features():
    logits = torch.tensor([[4.0, 0.0], [4.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    y = torch.tensor([0, 1, 0, 1])  # over-confident: a temperature above 1 fits better
    assert fit_temperature(logits, y) > 1.5
    e1, e2 = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    f = embedding_pair_features(e1, e2)
    assert f.shape == (3, 5, 8)
    torch.testing.assert_close(f, embedding_pair_features(e2, e1))
    net = RelateNet(RelateConfig(inputs="embeddings", n_features=8, n_summary=0, max_degree=4))
    deg, typ = net(f, torch.ones(3, 5, dtype=torch.bool), torch.zeros(3, 0))
    assert deg.shape == (3, 6) and typ.shape == (3, 3)


def test_degree_accuracy_counts_unrelated_calls_as_wrong_for_relatives():
    truth = np.array([1, 4, 4, UNRELATED, UNRELATED])
    called = np.array([2, UNRELATED, 5, UNRELATED, 3])
    acc = degree_accuracy(truth, called)
    assert list(acc) == ["1", "4", "UN"]
    assert acc["1"] == {"n": 1, "exact": 0.0, "within1": 1.0}
    assert acc["4"] == {"n": 2, "exact": 0.0, "within1": 0.5}
    assert acc["UN"] == {"n": 2, "exact": 0.5, "within1": 0.5}


def test_store_input_gives_the_same_table(sims, tmp_path):
    from snpbag.store.convert import convert

    train, _, segment_model = sims
    store = tmp_path / "ped.zarr"
    convert(str(train / "pedigree.vcf.gz"), str(store))
    with pytest.raises(InputError, match="ped.zarr: shared segments are read from a VCF/BCF, not a store"):
        rel.relate(model=segment_model, genetic_map=train, input=store, out=tmp_path / "s")
    model = tmp_path / "classifier"  # the same model without its segment caller reads stores
    shutil.copytree(segment_model, model)
    meta = json.loads((model / rel.CONFIG_FILE).read_text())
    meta["segments"] = None
    (model / rel.CONFIG_FILE).write_text(json.dumps(meta))
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("F0001_P F0001_A1\nF0001_A1 F0001_B1\nF0001_P F0002_P\nF0002_B3 F0002_A3\n")
    with pytest.raises(InputError, match="--populations/--genetic-map: this relate model has no segment caller"):
        rel.relate(model=model, genetic_map=train, input=store, out=tmp_path / "s", pairs=pairs)
    rel.relate(model=model, input=train / "pedigree.vcf.gz", out=tmp_path / "vcf", pairs=pairs)
    rel.relate(model=model, input=store, out=tmp_path / "store", pairs=pairs)
    a, b = tmp_path / "vcf.rel", tmp_path / "store.rel"
    assert a.read_text() == b.read_text() and len(a.read_text().splitlines()) == 5


def test_prefilter_recall_on_the_test_pedigree(sims, tmp_path):
    """What --min-kinship misses: related pairs of the held-out families whose exact KING kinship
    (`snpbag king`, all pairs) is under the cut."""
    from snpbag.eval.relate import prefilter_recall
    from snpbag.kinship.king import king

    _, test, _ = sims
    king(test / "pedigree.vcf.gz", out=tmp_path / "all")
    lines = (tmp_path / "all.kin0").read_text().splitlines()
    col = lines[0].split("\t").index("KINSHIP")
    kin = {frozenset(x.split("\t")[:2]): float(x.split("\t")[col]) for x in lines[1:]}
    truth = {frozenset((r["id1"], r["id2"])): UNRELATED if r["degree"] == "NA" else int(r["degree"])
             for r in rel._read_tsv(test / "pedigree_pairs.tsv")}
    pairs = sorted(kin, key=sorted)
    t = np.array([truth.get(p, UNRELATED) for p in pairs])  # pairs across families are unrelated
    k = np.array([kin[p] for p in pairs])
    cuts = (0.0442, 0.0221, -np.inf)
    rows = {r["degree"]: r for r in prefilter_recall(t, k, cuts)}
    for d, r in rows.items():  # the share kept, counted pair by pair
        mine = [kin[p] for p in pairs if truth.get(p, UNRELATED) == (UNRELATED if d == "UN" else int(d))]
        assert r["pairs"] == len(mine) and r["kept_0.0442"] == sum(x >= 0.0442 for x in mine) / len(mine)
        assert r["kept_-inf"] == 1.0
    # on this tiny genome (4 x 300 kb) KING's 3rd-degree cut keeps every first-degree pair, loses
    # distant relatives and skips most unrelated pairs; a lower cut keeps at least as many
    assert rows["1"]["kept_0.0442"] == 1.0 and rows["9"]["kept_0.0442"] < 0.5
    assert all(r["kept_0.0221"] >= r["kept_0.0442"] for r in rows.values())
    assert rows["UN"]["kept_0.0221"] < 0.1


def test_king_thresholds_and_confusion_used_by_the_benchmark():
    from snpbag.eval.relate import degree_confusion

    k = np.array([0.45, 0.25, 0.17, 0.1, 0.044, 0.05, 0.01, -0.2, np.nan])  # cuts 0.354, 0.177, 0.0884, 0.0442
    np.testing.assert_array_equal(king_threshold_degrees(k),
                                  [1, 1, 2, 2, UNRELATED, 3, UNRELATED, UNRELATED, UNRELATED])
    truth = np.array([1, 1, 2, 5, 13, UNRELATED, UNRELATED])
    called = np.array([1, 2, 2, UNRELATED, UNRELATED, 3, UNRELATED])
    labels, m = degree_confusion(truth, called, 12)
    assert labels[0] == "1" and labels[-1] == "UN" and m.shape == (13, 13) and m.sum() == len(truth)
    assert m[0, 0] == m[0, 1] == m[1, 1] == m[4, 12] == m[12, 2] == 1
    assert m[12, 12] == 2  # degree 13 beyond the last class counts as unrelated, as in training


def _segment_pairs(rng, n_per_type: int, patches: int = 120) -> rel.PairData:
    """Degree-2 pairs whose per-patch KING counts share half the genome IBD in 4, 8 or 15 segments (the
    GP, HS, AV pattern: one, two or three meioses), plus unrelated pairs: the types differ only in
    where the shared patches lie, not in how many there are."""
    counts, y, sub = [], [], []
    for k, segments in enumerate((8, 4, 15)):  # SUBTYPES order: HS, GP, AV
        for _ in range(n_per_type):
            ibd = np.zeros(patches, bool)
            cuts = np.sort(rng.choice(np.arange(1, patches // 2), segments - 1, replace=False))
            lengths = np.diff([0, *cuts, patches // 2])  # IBD stretch lengths, half the genome in all
            gaps = np.diff([0, *np.sort(rng.choice(np.arange(1, patches // 2), segments, replace=False)),
                            patches // 2])  # non-IBD stretches in between
            pos = 0
            for g, n in zip(gaps, lengths):
                pos += g
                ibd[pos:pos + n] = True
                pos += n
            counts.append(_patch_counts(rng, ibd))
            y.append(2)
            sub.append(k)
    for _ in range(n_per_type):
        counts.append(_patch_counts(rng, np.zeros(patches, bool)))
        y.append(7)
        sub.append(-1)
    n = len(y)
    return rel.PairData([], np.zeros((n, 2), np.int64), np.stack(counts), 1, np.array(y), np.arange(n) % 10,
                        np.array(sub))


def _patch_counts(rng, ibd: np.ndarray) -> np.ndarray:
    """(patches, 5) KING counts of 200-site patches: IBD patches have no IBS0 and more shared hets."""
    hethet = np.where(ibd, rng.poisson(30, ibd.size), rng.poisson(12, ibd.size))
    ibs0 = np.where(ibd, 0, rng.poisson(8, ibd.size))
    het = rng.poisson(20, (ibd.size, 2))
    return np.stack([hethet, ibs0, het[:, 0], het[:, 1], np.full(ibd.size, 200)], axis=1).astype(np.int32)


@pytest.mark.parametrize("context", [2, 0])
def test_degree2_types_are_told_apart_by_segment_ends_along_the_genome(context):
    """Same IBD share, different segment counts: the type reader separates them only when it can look
    along the genome (its convolution); pooled per-patch evidence alone is at chance (1/3)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    train, test = _segment_pairs(rng, 60), _segment_pairs(rng, 30)
    net = rel.fit_net(train, max_degree=6, patch_sites=200, fit=rel.Fit(epochs=40, seed=0),
                      options={"subtype_context": context})
    two = test.sub >= 0
    acc = np.mean(rel.called_subtypes(net, test.subset(two), 200) == test.sub[two])
    if context:
        assert acc >= 0.7, acc  # 0.80 measured
    else:
        assert acc <= 0.5, acc  # 0.30 measured
    # the degree itself is unaffected: every pair is degree 2 or unrelated, and called so
    assert (rel.called_degrees(net, test, 200)[two] == 2).mean() >= 0.95


def test_prefilter_misses_splits_shares_less_from_king_below():
    from snpbag.eval.relate import prefilter_misses

    truth = np.array([3, 3, 3, 3, 5, UNRELATED])
    kinship = np.array([0.06, 0.03, 0.01, np.nan, 0.05, 0.3])
    realised = np.array([0.06, 0.05, 0.02, 0.07, 0.01, 0.0])
    rows = prefilter_misses(truth, kinship, realised, 0.0442)
    assert [r["degree"] for r in rows] == ["3", "5"]  # unrelated pairs are not misses
    # degree 3: 0.03 and NaN share enough (KING below), 0.01 shares less; degree 5: kept
    assert rows[0] == {"degree": "3", "pairs": 4, "missed": 3, "missed_share": 0.75, "shares_less": 1,
                       "king_below": 2}
    assert rows[1]["missed"] == 0 and rows[1]["shares_less"] == 0


def test_pedigree_pairs_without_counts_and_parent_offspring_segments(sims):
    from snpbag.kinship.segments import ibs0_free_segments, read_genome
    from snpbag.simulate.pedigree import simulation_genetic_map

    _, test, _ = sims
    full = rel.pedigree_pairs(test, max_degree=6, patch_sites=PATCH, unrelated_per_related=1.0, seed=3)
    labels = rel.pedigree_pairs(test, max_degree=6, patch_sites=PATCH, unrelated_per_related=1.0, seed=3, counts=False)
    assert labels.counts is None and labels.ids == full.ids
    np.testing.assert_array_equal(labels.pairs, full.pairs)
    np.testing.assert_array_equal(labels.y, full.y)
    genome = read_genome(test / "pedigree.vcf.gz", simulation_genetic_map(test))
    po = full.pairs[full.y == 0]
    segs = ibs0_free_segments(genome, po, min_cm=0.0)
    assert len(po) and segs.count().tolist() == [len(genome.chromosomes)] * len(po)  # IBD1 everywhere: one run each
    np.testing.assert_allclose(segs.total_cm(), genome.chromosome_cm.sum())


def test_segment_caller_inputs_and_its_stored_record(sims, tmp_path):
    from snpbag.inference import relateersa

    train, _, model = sims
    vcf = train / "pedigree.vcf.gz"
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("F0001_P F0001_A1\nF0001_P F0002_P\nF0001_A1 F0001_B1\n")
    with pytest.raises(InputError, match="--genetic-map: this relate model calls degrees beyond 3 from shared "
                                         "segments in cM; give --genetic-map FILE"):
        rel.relate(model=model, input=vcf, out=tmp_path / "o1", pairs=pairs)
    import gzip

    unphased = tmp_path / "unphased.vcf"
    unphased.write_text("".join(x if x.startswith("#") else x.replace("|", "/")
                                for x in gzip.open(vcf, "rt").read().splitlines(keepends=True)))
    with pytest.raises(InputError, match="unphased.vcf: unphased genotype at .* the haplotype IBD detector needs "
                                         "phased input"):
        rel.relate(model=model, input=unphased, out=tmp_path / "o2", pairs=pairs, genetic_map=train, segments="hap")
    rel.relate(model=model, input=unphased, out=tmp_path / "auto", pairs=pairs, genetic_map=train)
    assert "segments\tibs0" in (tmp_path / "auto.rel.log").read_text()  # auto: IBS0-free runs on unphased input
    pops = tmp_path / "pops.tsv"
    pops.write_text("".join(f"{s}\tMARS\n" for s in rel.GenotypeSource(vcf).sample_ids))
    with pytest.raises(InputError, match=r"population group\(s\) MARS have no background in this model"):
        rel.relate(model=model, input=vcf, out=tmp_path / "o3", pairs=pairs, genetic_map=train, populations=pops)
    rel.relate(model=model, input=vcf, out=tmp_path / "pop", pairs=pairs, genetic_map=train,
               populations=train / "samples.tsv")
    assert "background\tgroups" in (tmp_path / "pop.rel.log").read_text()
    assert not list(tmp_path.glob("o*.rel*"))
    # the stored record is what fitting on the same training pairs gives, through relate.json
    _, meta = rel.load(model)
    data = rel.pedigree_pairs(train, max_degree=6, patch_sites=PATCH, unrelated_per_related=2.0, seed=0)
    again = relateersa.fit([(train, data, rel.degrees_of_classes(data.y, 6))], max_degree=6)
    assert json.loads(json.dumps(again)) == meta["segments"]
    assert set(meta["segments"]["detectors"]) == {"hap", "ibs0"}
    assert {"CEU", "YRI", "CHB", relateersa.POOLED} <= set(meta["segments"]["detectors"]["hap"]["backgrounds"])


def test_info_describes_a_relate_directory(sims, tmp_path):
    from snpbag import api

    _, _, model = sims
    _, meta = rel.load(model)
    seg = meta["segments"]
    text = api.info(model)
    assert "classes           PO FS 2 3 4 5 6 UN; degree-2 types HS GP AV" in text
    assert "KING's thresholds to degree 3, ERSA on shared segments beyond (needs --genetic-map" in text
    hap = seg["detectors"]["hap"]
    assert (f"hap   segments of >= 3 cM, 2-exponential background; LOD cutoff {hap['min_lod']['groups']:.2f} "
            f"(population groups), {hap['min_lod']['pooled']:.2f} (pooled)") in text
    assert all(f"{g} {n:,}" in text for g, n in seg["unrelated_pairs"].items())
    assert f"UN {meta['training']['pairs']['UN']:,}" in text
    # a classifier-only directory says it needs no map
    plain = tmp_path / "plain"
    shutil.copytree(model, plain)
    cfg = plain / rel.CONFIG_FILE
    cfg.write_text(json.dumps(json.loads(cfg.read_text()) | {"segments": None}))
    text = api.info(plain)
    assert "the classifier alone (trained with --no-segments): no --genetic-map or --populations needed" in text
    assert "LOD cutoff" not in text


def test_pairs_scored_a_block_at_a_time_give_the_same_outputs(sims, tmp_path, monkeypatch):
    """relate scores blocks of pairs (PAIR_BLOCK), a few at once in threads; blocks that split the pairs unevenly,
    scored one at a time or three at once, write the table and log of one block holding them all, with
    populations and --max-degree too."""
    train, _, model = sims
    vcf = train / "pedigree.vcf.gz"
    ids = rel.GenotypeSource(vcf).sample_ids
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("".join(f"{ids[i]} {ids[j]}\n" for i in range(0, 40, 3) for j in range(i + 1, 40, 7)))
    kw = dict(model=model, input=vcf, pairs=pairs, genetic_map=train, populations=train / "samples.tsv")
    whole = rel.relate(out=tmp_path / "whole", **kw)
    monkeypatch.setattr(rel, "PAIR_BLOCK", 4)
    for threads in (1, 3):
        blocks = rel.relate(out=tmp_path / f"blocks{threads}", threads=threads, **kw)
        assert whole.pairs > 3 * 4 and whole.pairs % 4
        assert (whole.pairs, whole.per_degree) == (blocks.pairs, blocks.per_degree)
        for ext in ("rel", "rel.log"):
            assert (tmp_path / f"blocks{threads}.{ext}").read_text() == (tmp_path / f"whole.{ext}").read_text()
    close = rel.relate(out=tmp_path / "close", max_degree=3, **kw)
    monkeypatch.setattr(rel, "PAIR_BLOCK", 8192)
    assert close.written == rel.relate(out=tmp_path / "close1", max_degree=3, **kw).written
    assert (tmp_path / "close.rel").read_text() == (tmp_path / "close1.rel").read_text()
    assert rel.block_threads(8, 380_000, 128) == 3  # 0.5 GB of counts a block of 8,192 pairs: 4 in 2 GiB
    assert rel.block_threads(2, 380_000, 128) == 2 and rel.block_threads(8, 10**8, 1) == 1


def test_relatives_bound_degrees_through_parents_found_from_the_calls(sims, tmp_path):
    """With --relatives (the default) a row differs from the pair's own call only where a parent of one member,
    found from the pair calls (snpbag.kinship.relatives, checked against the pedigree in test_relatives), is closer
    to the other: VIA names it, DEGREE is that pair's DEGREE + 1, PAIR_DEGREE the pair's own call, every other
    column as without; pairs a prefilter skipped get rows of their own (evidence NA)."""
    from snpbag.kinship.relatives import find_parents

    _, test, model = sims
    vcf, kw = test / "pedigree.vcf.gz", dict(model=model, genetic_map=test)
    rel.relate(input=vcf, out=tmp_path / "own", relatives=False, prefilter="none", **kw)
    got = rel.relate(input=vcf, out=tmp_path / "with", prefilter="none", **kw)
    read = lambda f: [x.split("\t") for x in (tmp_path / f).read_text().splitlines()]  # noqa: E731
    (head, *own), (_, *rows) = read("own.rel"), read("with.rel")
    c = {k: head.index(k) for k in ("DEGREE", "PAIR_DEGREE", "VIA")}
    assert len(own) == len(rows) == got.pairs and all(x[:2] == y[:2] for x, y in zip(own, rows))
    ids = sorted({x for r in own for x in r[:2]})
    deg = lambda s: 0 if s == "UN" else int(s)  # noqa: E731
    parents = find_parents(np.array([[ids.index(a), ids.index(b)] for a, b, *_ in own]),
                           np.array([deg(x[c["DEGREE"]]) for x in own]), np.array([x[7] == "PO" for x in own]))
    parents = {ids[k]: {ids[q] for q in ps} for k, ps in parents.items()}
    final = {frozenset(x[:2]): deg(x[c["DEGREE"]]) for x in rows}
    bounded = [(x, y) for x, y in zip(own, rows) if y[c["VIA"]] != "."]
    assert bounded and all(x == y for x, y in zip(own, rows) if y[c["VIA"]] == ".")
    for x, y in bounded:
        a, b, v = y[0], y[1], y[c["VIA"]]
        assert y[c["PAIR_DEGREE"]] == x[c["DEGREE"]] and y[:c["DEGREE"]] == x[:c["DEGREE"]]
        assert y[c["DEGREE"] + 1:c["PAIR_DEGREE"]] == x[c["DEGREE"] + 1:c["PAIR_DEGREE"]]
        assert v in parents.get(a, ()) or v in parents.get(b, ())
        other = b if v in parents.get(a, ()) else a
        assert final[frozenset(y[:2])] == final[frozenset((v, other))] + 1
        assert deg(x[c["DEGREE"]]) == 0 or deg(x[c["DEGREE"]]) > final[frozenset(y[:2])]
    log = dict(x.split("\t") for x in (tmp_path / "with.rel.log").read_text().splitlines())
    assert int(log["relatives_bounded_scored"]) == len(bounded) and int(log["relatives_parents_found"]) == len(parents)
    # the KING prefilter leaves out all but the closest pairs; a parent's call still bounds others, in rows of
    # their own; with --pairs only the listed pairs are bounded
    pre = rel.relate(input=vcf, out=tmp_path / "pre", min_kinship=0.2, **kw)
    extra = [x.split("\t") for x in (tmp_path / "pre.rel").read_text().splitlines()[1 + pre.pairs:]]
    assert extra and all(x[2:6] == ["NA"] * 4 and x[c["VIA"]] != "." and x[c["PAIR_DEGREE"]] == "NA" for x in extra)
    listed = tmp_path / "pairs.txt"
    listed.write_text("".join(f"{x[0]} {x[1]}\n" for x in read("pre.rel")[1:1 + pre.pairs]))
    only = rel.relate(input=vcf, out=tmp_path / "listed", pairs=listed, **kw)
    assert only.written == only.pairs == pre.pairs
