"""The caller behind ``snpbag relate``: KING's thresholds to degree 3, ERSA on shared segments beyond, on hand-built
genomes with known sharing; its record through the relate directory."""

from __future__ import annotations

import numpy as np
import pytest

from snpbag.errors import InputError
from snpbag.kinship import ersa, pairfeatures as pf
from snpbag.kinship.segments import Genome
from snpbag.inference import relateersa as re_

MAX_DEGREE = 8
SITES_PER_CM = 20
CHROM_CM = 100.0


def _genome() -> tuple[Genome, dict[str, int]]:
    """Two chromosomes of 100 cM at 20 sites per cM, common alleles; A, A's twin, A's child, a distant relative
    sharing one 20 cM stretch of one haplotype with A, and an unrelated person."""
    rng = np.random.default_rng(5)
    v = int(2 * CHROM_CM * SITES_PER_CM)
    chrom = np.repeat([0, 1], v // 2).astype(np.int32)
    cm = np.tile(np.arange(v // 2) / SITES_PER_CM, 2)
    hap = lambda: rng.integers(0, 2, v).astype(np.int8)  # noqa: E731
    a = np.stack([hap(), hap()], axis=1)
    child = np.stack([a[:, 0], hap()], axis=1)  # one whole haplotype from A
    distant = np.stack([hap(), hap()], axis=1)
    seg = (chrom == 0) & (cm >= 30) & (cm < 50)
    distant[seg, 0] = a[seg, 1]  # 20 cM identical by descent with A's second haplotype
    h = np.stack([a, a.copy(), child, distant, np.stack([hap(), hap()], axis=1)], axis=1)  # (v, 5, 2)
    names = ["A", "twin", "child", "distant", "unrelated"]
    g = Genome(names, h.sum(axis=2).astype(np.int8), chrom, cm, ["1", "2"], h)
    return g, {n: k for k, n in enumerate(names)}


def _record(rate: float = 0.2, types: str = re_.TYPES) -> dict:
    table = np.full((3, MAX_DEGREE + 1), 0.01)
    for b in range(3):
        table[b, b] = 1.0
    table /= table.sum(axis=1, keepdims=True)
    bg = ersa.Background(rate, 1.0).to_dict()  # short background segments: a 20 cM one stands out
    return {"types": types, "king_table": table.tolist(), "detectors": {d: {
        "threshold_cm": det.threshold, "components": det.components, "min_lod": {"groups": 1.92, "pooled": 2.5},
        "backgrounds": {re_.POOLED: bg, "CEU": bg}} for d, det in re_.DETECTORS.items()}}


def _call(genome: Genome, pairs: np.ndarray, detector: str = "hap", **kw) -> re_.Calls:
    counts = pf.patch_counts(genome.dosages, pairs, patch_sites=256)
    return re_.call(_record(), genome, pairs, counts, detector=detector, max_degree=MAX_DEGREE, **kw)


def test_twins_parent_distant_and_unrelated_pairs_get_the_expected_calls():
    g, ix = _genome()
    pairs = np.array([[ix["A"], ix[n]] for n in ("twin", "child", "distant", "unrelated")])
    for detector in re_.DETECTORS:
        c = _call(g, pairs, detector)
        np.testing.assert_allclose(c.probabilities.sum(1), 1.0)
        called = c.probabilities.argmax(1) + 1
        # twins (KING's duplicate range) and parent–offspring: KING's degree 1, with its training share
        assert called[0] == called[1] == 1
        np.testing.assert_allclose(c.probabilities[:2], [_record()["king_table"][0]] * 2)
        # one 20 cM segment: beyond KING's reach, ERSA names a distant degree (never 1 or 2 there)
        assert 3 <= called[2] <= MAX_DEGREE and c.probabilities[2, :2].sum() == 0
        assert called[3] == MAX_DEGREE + 1  # unrelated
        # the 20 cM segment, its ends overshot by the chance matches beside it (more often for IBS0-free runs)
        assert c.segments[2] == 1 and 19.9 <= c.shared_cm[2] < (21 if detector == "hap" else 25)
        assert c.segments[3] == 0


def test_a_model_calls_with_the_relationship_types_it_was_fitted_with():
    """The LOD cutoff in a record was fitted under its types: the call must use them, not the current default."""
    g, ix = _genome()
    pairs = np.array([[ix["A"], ix["distant"]]])
    counts = pf.patch_counts(g.dosages, pairs, patch_sites=256)
    got = {}
    for types in ersa.TYPES:
        got[types] = re_.call(_record(types=types), g, pairs, counts, detector="hap", max_degree=MAX_DEGREE)
        model = ersa.Model(threshold=3.0, genome_cm=float(g.chromosome_cm.sum()), chromosomes=2,
                           background=ersa.Background(0.2, 1.0), max_degree=MAX_DEGREE, types=types)
        ll = ersa.log_likelihoods(re_.segments_of(g, pairs, "hap"), model)[0]
        ll[-1] += 2.5  # the pooled cutoff of _record
        p = np.exp(ll - ll.max())
        p[:2] = 0.0  # beyond KING's degree-3 range
        np.testing.assert_allclose(got[types].probabilities[0], p / p.sum(), rtol=1e-9)
    assert not np.allclose(got["ersa"].probabilities, got["all"].probabilities)
    assert not np.allclose(got["best"].probabilities, got["all"].probabilities)


def test_the_pair_order_does_not_change_the_call():
    g, _ = _genome()
    pairs = np.array([[i, j] for i in range(5) for j in range(i + 1, 5)])
    for detector in re_.DETECTORS:
        a, b = _call(g, pairs, detector), _call(g, pairs[:, ::-1].copy(), detector)
        np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-12)
        np.testing.assert_array_equal(a.segments, b.segments)


def test_population_groups_choose_the_background_and_unknown_ones_are_refused():
    g, ix = _genome()
    pairs = np.array([[ix["A"], ix["distant"]]])
    pops = dict.fromkeys(g.ids, "CEU")
    groups = re_.groups_of(pops, g.ids, pairs)
    assert groups.tolist() == ["CEU"]
    assert _call(g, pairs, groups=groups).background == "groups" and _call(g, pairs).background == "pooled"
    pops["distant"] = "YRI"
    with pytest.raises(InputError, match=r"population group\(s\) CEU\|YRI have no background in this model "
                                         r"\(trained on CEU\)"):
        _call(g, pairs, groups=re_.groups_of(pops, g.ids, pairs))


def test_a_stronger_background_or_cutoff_calls_a_lone_segment_unrelated():
    g, ix = _genome()
    pairs = np.array([[ix["A"], ix["distant"]]])
    counts = pf.patch_counts(g.dosages, pairs, patch_sites=256)
    rec = _record(rate=40.0)  # unrelated pairs of this "population" share many long segments
    for d in rec["detectors"].values():
        d["backgrounds"][re_.POOLED] = ersa.Background(40.0, 10.0).to_dict()
    c = re_.call(rec, g, pairs, counts, detector="hap", max_degree=MAX_DEGREE)
    assert c.probabilities.argmax(1)[0] == MAX_DEGREE


def test_populations_file_and_map_errors(tmp_path):
    f = tmp_path / "pops.tsv"
    f.write_text("sample\tpopulation\nA\tCEU\nB\n")
    with pytest.raises(InputError, match="--populations .*pops.tsv line 3: need a sample id and its population"):
        re_.read_populations(f, ["A"])
    f.write_text("#IID POP\nA CEU\n")
    assert re_.read_populations(f, ["A"]) == {"A": "CEU"}
    with pytest.raises(InputError, match=r"no population for 1 input sample\(s\) \(B\)"):
        re_.read_populations(f, ["A", "B"])
    with pytest.raises(InputError, match="--genetic-map: this relate model calls degrees beyond 3 from shared "
                                         "segments in cM; give --genetic-map FILE"):
        re_.genetic_map_of(None)
    with pytest.raises(InputError, match=r"--specificity 1.0: choose a share in \[0.5, 1\)"):
        re_.fit([], max_degree=MAX_DEGREE, specificity=1.0)
