"""Pedigree simulation: relationships, meiosis, realised kinship, and the written files."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from cyvcf2 import VCF

from snpbag.simulate import coalescent as co
from snpbag.simulate import cohort as sm
from snpbag.errors import InputError
from snpbag.simulate import pedigree as ped

POPS = ["YRI", "CEU", "CHB"]


def one_family(seed: int = 0) -> list[ped.Member]:
    return ped.build_families(1, populations=POPS, rng=np.random.default_rng(seed))


def hap(starts, labels) -> ped.Haplotype:
    return ped.Haplotype(np.array(starts, dtype=np.int64), np.array(labels, dtype=np.int64))


# --- relationships ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "degree", "name", "max_degree"),
    [
        ("P", "A1", 1, "parent-offspring", 9),
        ("A1s", "A2b", 1, "parent-offspring", 9),
        ("A1", "B1", 1, "full siblings", 9),
        ("A5", "A5b", 1, "full siblings", 9),
        ("A1", "H1", 2, "half siblings", 9),
        ("B1", "A2", 2, "avuncular", 9),
        ("P", "A2", 2, "grandparent-grandchild", 9),
        ("A2", "B2", 3, "first cousins", 9),
        ("H1", "A2", 3, "half avuncular", 9),
        ("B1", "A3", 3, "grand-avuncular", 9),
        ("A2", "B3", 4, "first cousins once removed", 9),
        ("A2", "H2", 4, "half first cousins", 9),
        ("P", "A5", 5, "great-great-great-grandparent-grandchild", 9),
        ("A3", "B3", 5, "second cousins", 9),
        ("A4", "B4", 7, "third cousins", 9),
        ("A4", "H4", 8, "half third cousins", 9),
        ("A5", "B5b", 9, "fourth cousins", 9),
        ("H4", "B5", 9, "half third cousins once removed", 9),
        ("M", "W", None, "unrelated", 9),
        ("A1s", "B1", None, "unrelated", 9),
        ("A2s", "A1s", None, "unrelated", 9),
        ("A6", "B6", 11, "fifth cousins", 12),
        ("A7", "B6b", 12, "fifth cousins once removed", 12),
        ("H5", "A6", 11, "half fourth cousins once removed", 12),
        ("H5", "A7b", 12, "half fourth cousins twice removed", 12),
        ("P", "A7", 7, "great-great-great-great-great-grandparent-grandchild", 12),
        ("A7", "B1", 7, "great-great-great-great-grand-avuncular", 12),
    ],
)
def test_template_relationships(a, b, degree, name, max_degree):
    fam = ped.build_families(1, populations=POPS, rng=np.random.default_rng(0), max_degree=max_degree)
    genomes = ped.drop_genomes(fam, lengths_bp=[10_000], lengths_cm=[100.0], rng=np.random.default_rng(1))
    truth = {(p.id1, p.id2): p for p in ped.pair_truth(fam, genomes, [10_000])}
    p = truth.get((f"F0001_{a}", f"F0001_{b}")) or truth[(f"F0001_{b}", f"F0001_{a}")]
    assert (p.degree, p.relationship) == (degree, name)
    assert p.expected_kinship == (0.0 if degree is None else 2.0 ** -(degree + 1))


def test_every_degree_1_to_9_is_present():
    fam = one_family()
    genomes = ped.drop_genomes(fam, lengths_bp=[10_000], lengths_cm=[100.0], rng=np.random.default_rng(1))
    degrees = {p.degree for p in ped.pair_truth(fam, genomes, [10_000])}
    assert degrees == {None, *range(1, 10)}


def test_expected_kinship_matches_path_counting():
    """The tabular method against the textbook sum over closest common ancestors."""
    fam = one_family()
    phi = ped.expected_kinship_matrix(fam)
    anc = ped._ancestors(fam)
    for i, j in itertools.combinations(range(len(fam)), 2):
        a, b = fam[i].id, fam[j].id
        common = set(anc[a]) & set(anc[b])
        closest = [c for c in common if not any(c != d and c in anc[d] for d in common)]
        expected = sum(0.5 ** (anc[a][c] + anc[b][c] + 1) for c in closest)
        assert phi[i, j] == pytest.approx(expected), (a, b)
    assert np.allclose(np.diag(phi), 0.5)


def test_families_sexes_and_founders():
    members = ped.build_families(5, populations=POPS, rng=np.random.default_rng(3))
    assert len(members) == 5 * ped.MEMBERS_PER_FAMILY
    by_id = {m.id: m for m in members}
    for m in members:
        if m.founder is None:
            assert by_id[m.father].sex == 1 and by_id[m.mother].sex == 2
            assert by_id[m.father].family == by_id[m.mother].family == m.family
    founders = [m for m in members if m.founder is not None]
    counts = ped.founders_per_population(5, 3)
    assert counts == [28, 28, 14]
    assert sorted(m.founder for m in founders) == list(range(sum(counts)))
    for m in founders:  # founder samples of population p follow those of populations < p
        p = POPS.index(m.population)
        assert sum(counts[:p]) <= m.founder < sum(counts[: p + 1])
    with pytest.raises(InputError, match="--pedigree 0: need at least one family"):
        ped.build_families(0, populations=POPS, rng=np.random.default_rng(0))


# --- meiosis and IBD ------------------------------------------------------------------------


def test_meiosis_switches_at_crossovers():
    h0 = hap([0, 50], [0, 7])
    h1 = hap([0], [1])
    child = ped.meiosis(h0, h1, np.array([30, 80]), start=0)
    np.testing.assert_array_equal(child.starts, [0, 30, 80])
    np.testing.assert_array_equal(child.labels, [0, 1, 7])
    np.testing.assert_array_equal(child.at(np.array([0, 29, 30, 79, 80, 99])), [0, 0, 1, 1, 7, 7])
    other = ped.meiosis(h0, h1, np.array([30, 80]), start=1)
    np.testing.assert_array_equal(other.at(np.array([0, 30, 49, 50, 80])), [1, 0, 0, 7, 1])
    assert ped.meiosis(h0, h1, np.zeros(0, dtype=np.int64), start=1) is h1


def test_family_ibd_matches_pairwise_reference():
    fam = one_family(2)
    lengths = [200_000, 50_000, 120_000]
    genomes = ped.drop_genomes(fam, lengths_bp=lengths, lengths_cm=[150.0, 80.0, 120.0], rng=np.random.default_rng(4))
    fast = ped.family_ibd_kinship([genomes[m.id] for m in fam], lengths)
    for i, j in itertools.combinations(range(len(fam)), 2):
        assert fast[i, j] == pytest.approx(ped.ibd_kinship(genomes[fam[i].id], genomes[fam[j].id], lengths), abs=1e-12)
    np.testing.assert_allclose(np.diag(fast), 0.5)


def test_parent_offspring_realised_kinship_is_exactly_one_quarter():
    fam = one_family()
    lengths = [100_000] * 4
    genomes = ped.drop_genomes(fam, lengths_bp=lengths, lengths_cm=[200.0] * 4, rng=np.random.default_rng(5))
    for p in ped.pair_truth(fam, genomes, lengths):
        if p.relationship == "parent-offspring":
            assert p.ibd_kinship == pytest.approx(0.25)
        if p.relationship == "unrelated":
            assert p.ibd_kinship == 0.0


def test_mean_realised_kinship_per_degree_matches_expectation():
    """Over 60 families on a human-length genetic map, mean IBD kinship ≈ 2^-(d+1) for d = 1..9."""
    lengths_bp = [1_000] * 22  # physical scale is irrelevant to IBD fractions; the map is human
    sim = ped.simulate_pedigree(60, populations=POPS, lengths_bp=lengths_bp, lengths_cm=ped.HUMAN_AUTOSOME_CM,
                                rng=np.random.default_rng(2024))
    per_family: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for p in sim.pairs:
        if p.degree is not None:
            per_family[p.degree][p.id1.split("_")[0]].append(p.ibd_kinship)
    for d in range(1, 10):
        fam_means = np.array([np.mean(v) for v in per_family[d].values()])  # families are independent
        se = fam_means.std(ddof=1) / np.sqrt(len(fam_means))
        expected = 2.0 ** -(d + 1)
        assert abs(fam_means.mean() - expected) < 4 * se + 1e-12, (d, fam_means.mean(), expected, se)
        assert abs(fam_means.mean() / expected - 1) < (0.05 if d <= 4 else 0.25), d
    # distant relatives often share nothing at all, as in real genomes
    fourth = [p.ibd_kinship for p in sim.pairs if p.relationship == "fourth cousins"]
    assert 0.05 < np.mean(np.array(fourth) == 0) < 0.6


# --- files written by `snpbag simulate --pedigree` -----------------------------------------


@pytest.fixture(scope="module")
def pedigree_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ped") / "p"
    sm.simulate(out, length=40_000, pedigree=3, chromosomes=3, seed=9, chrom="chr22", founder_map="physical")
    return out


def _vcf_genotypes(path: Path) -> tuple[list[str], np.ndarray, list[str]]:
    v = VCF(str(path))
    chroms, gts = [], []
    for rec in v:
        assert len(rec.ALT) == 1
        chroms.append(rec.CHROM)
        gts.append(rec.genotype.array()[:, :2])
    return list(v.samples), np.array(gts), chroms


def test_pedigree_files_are_consistent(pedigree_dir):
    samples, _, chroms = _vcf_genotypes(pedigree_dir / "pedigree.vcf.gz")
    assert set(chroms) == {"chr1", "chr2", "chr3"}
    rows = [line.split("\t") for line in (pedigree_dir / "pedigree.tsv").read_text().splitlines()]
    assert rows[0] == ["family", "id", "father", "mother", "sex"]
    assert [r[1] for r in rows[1:]] == samples and len(samples) == 3 * ped.MEMBERS_PER_FAMILY
    sex = {r[1]: r[4] for r in rows[1:]}
    for _, _, father, mother, _ in rows[1:]:
        assert father == "0" or sex[father] == "1"
        assert mother == "0" or sex[mother] == "2"
    pairs = [line.split("\t") for line in (pedigree_dir / "pedigree_pairs.tsv").read_text().splitlines()]
    assert pairs[0] == ["id1", "id2", "degree", "relationship", "expected_kinship", "ibd_kinship"]
    ids = set(samples)
    for id1, id2, degree, rel, exp, ibd in pairs[1:]:
        assert id1 in ids and id2 in ids and id1 != id2
        if degree == "NA":
            assert rel == "unrelated" and float(exp) == 0 and float(ibd) == 0
        else:
            assert float(exp) == 2.0 ** -(int(degree) + 1) and 0 <= float(ibd) <= 0.5
    cross = [p for p in pairs[1:] if p[0].split("_")[0] != p[1].split("_")[0]]
    assert len(cross) == 3  # one founder pair per pair of families
    lines = (pedigree_dir / "samples.tsv").read_text().splitlines()
    assert lines[0] == "sample\tpopulation\tcontinent\tfamily"
    pops = {line.split("\t")[0]: line.split("\t")[1] for line in lines[1:]}
    assert {pops[s] for s in samples if s.startswith("F0002_")} == {"CEU"}


def test_parent_offspring_share_an_allele_at_every_site(pedigree_dir):
    samples, gts, _ = _vcf_genotypes(pedigree_dir / "pedigree.vcf.gz")
    col = {s: i for i, s in enumerate(samples)}
    rows = [line.split("\t") for line in (pedigree_dir / "pedigree.tsv").read_text().splitlines()[1:]]
    n_checked = 0
    for _, child, father, mother, _ in rows:
        if father == "0":
            continue
        c = gts[:, col[child]]  # (sites, 2): paternal | maternal
        assert (c[:, 0, None] == gts[:, col[father]]).any(axis=1).all(), (child, father)
        assert (c[:, 1, None] == gts[:, col[mother]]).any(axis=1).all(), (child, mother)
        n_checked += 1
    assert n_checked == 3 * (ped.MEMBERS_PER_FAMILY - ped.FOUNDERS_PER_FAMILY)
    # the check has power: unrelated founders of different families are opposite homozygotes somewhere
    a, b = gts[:, col["F0001_P"]].sum(axis=1), gts[:, col["F0002_P"]].sum(axis=1)
    assert (np.abs(a - b) == 2).any()


def test_member_genotypes_copy_founder_alleles():
    fam = one_family()
    rng = np.random.default_rng(8)
    genomes = ped.drop_genomes(fam, lengths_bp=[1_000], lengths_cm=[300.0], rng=rng)
    founders = rng.integers(0, 2, size=(50, 2 * ped.FOUNDERS_PER_FAMILY), dtype=np.uint8)
    pos0 = np.sort(rng.choice(1_000, size=50, replace=False))
    g = ped.member_genotypes(fam, genomes, founders, pos0, 0, chunk=7)
    for k, m in enumerate(fam):
        for h in range(2):
            hp = genomes[m.id][0][h]
            seg = [np.searchsorted(hp.starts, p, side="right") - 1 for p in pos0]
            expected = [founders[s, hp.labels[j]] for s, j in enumerate(seg)]
            np.testing.assert_array_equal(g[:, 2 * k + h], expected)


def test_pedigree_simulation_is_deterministic(tmp_path, pedigree_dir):
    sm.simulate(tmp_path / "again", length=40_000, pedigree=3, chromosomes=3, seed=9, chrom="chr22",
                founder_map="physical")
    for name in ("pedigree.vcf.gz", "pedigree.vcf.gz.tbi", "pedigree_pairs.tsv", "pedigree.tsv"):
        assert (tmp_path / "again" / name).read_bytes() == (pedigree_dir / name).read_bytes(), name


def test_founders_coalesce_on_the_pedigree_map(tmp_path):
    """The founders' coalescent runs at the rate the pedigree's crossovers use (the chromosome's cM over its
    bp), in blocks of at most FOUNDER_BLOCK_CM, so unrelated founders share no runs free of opposite
    homozygotes of 10 cM; at the cohort rate per bp (``physical``: 2 Mb of coalescent, 2.4 cM, carry
    chromosome 21's 80.5 cM) they share one every other pair."""
    from unittest import mock

    from snpbag.kinship.segments import ibs0_free_segments, read_genome

    runs = {}
    for how in ("pedigree", "physical"):
        out = tmp_path / how
        f = mock.Mock(wraps=co.simulate_haplotypes)  # pedigree founders call it in coalescent, physical in cohort
        with mock.patch.object(co, "simulate_haplotypes", f), mock.patch.object(sm, "simulate_haplotypes", f), \
                mock.patch.object(co, "FOUNDER_BLOCK_CM", 8.0):  # shorter blocks run faster (time ~ cM²)
            sm.simulate(out, length=2_000_000, pedigree=1, chromosomes=1, chrom="chr21", seed=3, founder_map=how)
        maps = [c.kwargs.get("rate_map") for c in f.call_args_list]
        if how == "pedigree":
            cm = [100 * float(np.sum(np.diff(pos) * rate)) for pos, rate in maps]
            assert sum(c.kwargs["length"] for c in f.call_args_list) == 2_000_000
            assert sum(cm) == pytest.approx(ped.HUMAN_AUTOSOME_CM[20]) and max(cm) <= 8.0
            assert ped.simulation_genetic_map(out).cm("chr21", np.array([2e6]))[0] == pytest.approx(sum(cm))
        else:
            assert maps == [None]
        genome = read_genome(out / "pedigree.vcf.gz", ped.simulation_genetic_map(out))
        rows = [r.split("\t") for r in (out / "pedigree.tsv").read_text().splitlines()[1:]]
        founders = [genome.ids.index(r[1]) for r in rows if r[2] == "0"]
        pairs = np.array(list(itertools.combinations(founders, 2)))
        runs[how] = ibs0_free_segments(genome, pairs, min_cm=10.0).count().mean()
    assert runs["pedigree"] < 0.1 < 0.3 < runs["physical"], runs


def test_founder_map_errors(tmp_path):
    with pytest.raises(InputError, match="--founder-map applies to pedigree simulations; add --pedigree N"):
        sm.simulate(tmp_path / "x", founder_map="physical")
    with pytest.raises(InputError, match="--founder-map genetic: choose one of pedigree, physical"):
        sm.simulate(tmp_path / "x", pedigree=1, founder_map="genetic")


def test_pedigree_chromosome_limit(tmp_path):
    with pytest.raises(InputError, match="--chromosomes 23: must be between 1 and 22"):
        sm.simulate(tmp_path / "x", pedigree=1, chromosomes=23)


# --- deeper templates (degrees up to 12) and genotype error ------------------------------


def _degree_of(g1: int, g2: int, half: bool) -> int:
    """Degree from the generations below the closest common ancestor(s), independently of the
    kinship matrix: lineal d = max(g1, g2); collateral via a couple g1 + g2 − 1, via one ancestor g1 + g2."""
    if min(g1, g2) == 0:
        return max(g1, g2)
    return g1 + g2 - (0 if half else 1)


@pytest.mark.parametrize("max_degree", [9, 12])
def test_degree_truth_matches_tabular_kinship_per_relationship_type(max_degree):
    fam = ped.build_families(1, populations=POPS, rng=np.random.default_rng(0), max_degree=max_degree)
    genomes = ped.drop_genomes(fam, lengths_bp=[10_000], lengths_cm=[100.0], rng=np.random.default_rng(1))
    phi = ped.expected_kinship_matrix(fam)
    index = {m.id: k for k, m in enumerate(fam)}
    anc = ped._ancestors(fam)
    per_type: dict[str, set[int]] = defaultdict(set)
    for p in ped.pair_truth(fam, genomes, [10_000]):
        if p.degree is None:
            assert phi[index[p.id1], index[p.id2]] == 0
            continue
        name, g1, g2, half = ped.classify_pair(p.id1, p.id2, anc)
        assert name == p.relationship and p.degree == _degree_of(g1, g2, half), (p, g1, g2, half)
        assert p.expected_kinship == phi[index[p.id1], index[p.id2]] == 2.0 ** -(p.degree + 1)
        per_type[p.relationship].add(p.degree)
    assert all(len(d) == 1 for d in per_type.values())  # one degree per relationship type
    assert set().union(*per_type.values()) == set(range(1, max_degree + 1))
    if max_degree == 9:  # the default template is unchanged
        assert len(fam) == ped.MEMBERS_PER_FAMILY == 36 and ped.founders_per_family() == 14


def test_line_depths_of_the_templates():
    assert ped.line_depths(12) == (7, 6, 5) and ped.line_depths(9) == (5, 5, 4)
    with pytest.raises(InputError, match="--max-degree 2: family templates reach degrees 3 to 20"):
        ped.family_template(2)


def test_realised_kinship_of_degrees_10_to_12_matches_expectation():
    sim = ped.simulate_pedigree(40, populations=POPS, lengths_bp=[1_000] * 22, lengths_cm=ped.HUMAN_AUTOSOME_CM,
                                rng=np.random.default_rng(7), max_degree=12)
    per_family: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for p in sim.pairs:
        if p.degree is not None:
            per_family[p.degree][p.id1.split("_")[0]].append(p.ibd_kinship)
    assert set(per_family) == set(range(1, 13))
    for d in (10, 11, 12):
        fam_means = np.array([np.mean(v) for v in per_family[d].values()])
        se = fam_means.std(ddof=1) / np.sqrt(len(fam_means))
        assert abs(fam_means.mean() - 2.0 ** -(d + 1)) < 4 * se + 1e-12, (d, fam_means.mean(), se)


def test_genotype_error_changes_only_calls_at_the_given_rate(tmp_path, pedigree_dir):
    g = np.random.default_rng(0).integers(0, 2, size=(2000, 200), dtype=np.uint8)
    e = ped.genotype_errors(g, 0.05, np.random.default_rng(1))
    d0, d1 = g.reshape(2000, 100, 2).sum(2), e.reshape(2000, 100, 2).sum(2)
    changed = d0 != d1
    assert abs(changed.mean() - 0.05) < 0.005 and set(np.unique(e)) <= {0, 1} and e.dtype == g.dtype
    same = g.reshape(2000, 100, 2)[~changed] == e.reshape(2000, 100, 2)[~changed]
    assert same.all()  # untouched calls keep their phase too
    for a in (0, 1, 2):  # the new genotype is one of the two others, about evenly
        new = d1[changed & (d0 == a)]
        assert a not in new and min(np.mean(new == b) for b in {0, 1, 2} - {a}) > 0.35
    # the simulation with errors: same families and truth, same sites, calls differ at about the rate
    out = tmp_path / "noisy"
    sm.simulate(out, length=40_000, pedigree=3, chromosomes=3, seed=9, chrom="chr22", genotype_error=0.02,
                founder_map="physical")
    for name in ("pedigree_pairs.tsv", "pedigree.tsv", "samples.tsv"):
        assert (out / name).read_bytes() == (pedigree_dir / name).read_bytes(), name
    _, clean, _ = _vcf_genotypes(pedigree_dir / "pedigree.vcf.gz")
    _, noisy, _ = _vcf_genotypes(out / "pedigree.vcf.gz")
    assert clean.shape == noisy.shape
    assert 0.01 < np.mean(clean.sum(-1) != noisy.sum(-1)) < 0.03


@pytest.mark.parametrize(("kw", "match"), [
    ({"max_degree": 12}, "--max-degree applies to pedigree simulations"),
    ({"genotype_error": 0.01}, "--genotype-error applies to pedigree simulations"),
    ({"genotype_error": 1.5, "pedigree": 1}, r"--genotype-error 1.5: must be in \[0, 1\)"),
    ({"max_degree": 30, "pedigree": 1}, "--max-degree 30: family templates reach degrees 3 to 20"),
])
def test_bad_pedigree_options(tmp_path, kw, match):
    with pytest.raises(InputError, match=match):
        sm.simulate(tmp_path / "x", length=10_000, **kw)
