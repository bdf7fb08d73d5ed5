"""snpbag.retrieval.states: composite haplotypes, against the dense copying model and exact answers."""

from __future__ import annotations

import numpy as np
import pytest

from test_haplotypes import _brute, _panel as _random_panel
from test_phase import _panel, _unphase, mosaics, switch_errors
from snpbag.errors import InputError
from snpbag.retrieval.haplotypes import HaplotypePanel
from snpbag.retrieval.phasing import PhaseOptions, phase_with_panel
from snpbag.retrieval.states import _best, _first_fill, composite_panel, composite_segments, tie_hash

COMPOSITE = PhaseOptions(states=12, block=32, margin=16, selection="composite", step=4, width=1, matches=2, model="pair")


def test_with_room_for_every_haplotype_the_slots_are_the_panel():
    """K >= the allowed haplotypes: every one gets a slot at the first step and keeps it (a
    match already in a slot never moves), so the composite panel is the allowed columns."""
    rng = np.random.default_rng(0)
    panel = rng.integers(0, 2, (50, 10)).astype(np.int8)
    allowed = np.ones(10, bool)
    allowed[[3, 4]] = False
    g = rng.integers(-1, 3, 50).astype(np.int8)
    comp = composite_panel(panel, g, allowed=allowed, states=8, genotype=True, step=3, width=1, matches=3)
    cols = sorted(tuple(c) for c in comp.T)
    assert cols == sorted(tuple(c) for c in panel[:, allowed].T)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_imputation_on_composites_with_every_haplotype_equals_the_dense_definition(seed):
    rng = np.random.default_rng(seed)
    h, cm = _random_panel(rng)
    g = h[0].sum(1).astype(np.int8)
    g[rng.random(g.size) < 0.6] = 4
    g[2] = -1
    ne, eps = 3e3, 0.01
    panel = HaplotypePanel(h, cm, states=8, block=7, margin=100, ne=ne, eps=eps, selection="composite")
    by_site = h.transpose(1, 0, 2).reshape(h.shape[1], -1)
    for exclude in (None, [1, 3]):
        allowed = np.ones(8, dtype=bool)
        for e in np.atleast_1d(exclude if exclude is not None else []):
            allowed[2 * e: 2 * e + 2] = False
        got = panel.votes(g, np.arange(g.size), exclude=exclude)
        np.testing.assert_allclose(got, _brute(by_site, cm, g, ne, eps, allowed), atol=1e-5, err_msg=str(exclude))


def test_phasing_on_composites_with_every_haplotype_equals_the_conflicts_rule():
    """With room for all haplotypes both rules give the HMM the same states (in another order)."""
    h = mosaics(16, 300, seed=4, n_founders=6)
    rng = np.random.default_rng(4)
    truth = np.stack([h[rng.integers(16)], h[rng.integers(16)]], -1)[None]
    g = _unphase(truth)
    g[0, rng.random(300) < 0.05] = -1
    cm = np.arange(300) * 1e-3
    want = phase_with_panel(_panel(h), cm, g, bounds=[(0, 300)], options=PhaseOptions(states=16, block=32, margin=16, model="pair"))
    got = phase_with_panel(_panel(h), cm, g, bounds=[(0, 300)],
                           options=PhaseOptions(states=16, block=32, margin=16, selection="composite", model="pair"))
    np.testing.assert_array_equal(got.haplotypes, want.haplotypes)
    np.testing.assert_allclose(got.pp, want.pp, atol=1e-4)


def test_a_slot_follows_a_mosaic_across_the_switch():
    """A query copying haplotype 3 then haplotype 11: some slot carries 3 up to near the
    switch and some slot carries 11 from near it on, though K is a fraction of the panel."""
    rng = np.random.default_rng(1)
    panel = rng.integers(0, 2, (400, 40)).astype(np.int8)
    q = np.concatenate([panel[:200, 3], panel[200:, 11]])
    comp = composite_panel(panel, q[:, None], allowed=np.ones(40, bool), states=4, genotype=False, step=8,
                           width=1, matches=1)
    assert comp.shape == (400, 4)
    assert (comp[:180] == panel[:180, [3]]).all(0).any()
    assert (comp[220:] == panel[220:, [11]]).all(0).any()


def test_an_exact_pair_of_panel_haplotypes_is_phased_without_switches():
    h = mosaics(60, 400, seed=1, n_founders=60, switch_rate=0.0)
    truth = np.stack([h[10], h[37]], -1)[None]
    res = phase_with_panel(_panel(h), np.arange(400) * 1e-4, _unphase(truth), bounds=[(0, 400)], options=COMPOSITE)
    sw, pairs = switch_errors(truth, res.haplotypes)
    assert pairs > 50 and sw == 0


def test_composites_phase_mosaics_better_than_per_block_conflicts():
    """Targets that are mosaics of a 200-haplotype panel with K = 12: the conflicts rule
    loses the copied haplotype at block boundaries, the composite slots keep it."""
    h = mosaics(240, 600, seed=7, n_founders=120, switch_rate=0.004)
    panel, targets = h[:200], h[200:]
    truth = np.stack([targets[0::2], targets[1::2]], -1)  # (20, L, 2)
    cm = np.arange(600) * 1e-3
    errors = {}
    for name, opts in (("conflicts", PhaseOptions(states=12, block=32, margin=16, model="pair")), ("composite", COMPOSITE)):
        res = phase_with_panel(_panel(panel), cm, _unphase(truth), bounds=[(0, 600)], options=opts, threads=2)
        errors[name] = switch_errors(truth, res.haplotypes)[0]
    assert errors["composite"] < errors["conflicts"], errors


def test_deterministic_by_seed_and_threads():
    h = mosaics(80, 250, seed=2)
    g = _unphase(np.stack([h[:8], h[8:16]], -1))
    runs = [phase_with_panel(_panel(h[16:]), np.arange(250) * 1e-3, g, bounds=[(0, 120), (120, 250)],
                             options=COMPOSITE, threads=t) for t in (1, 2, 2)]
    for r in runs[1:]:
        np.testing.assert_array_equal(r.haplotypes, runs[0].haplotypes)
        np.testing.assert_array_equal(r.pp, runs[0].pp)


def test_unknown_selection_is_refused():
    with pytest.raises(InputError, match="selection 'pbwt'; use one of conflicts, composite"):
        PhaseOptions(selection="pbwt")
    with pytest.raises(InputError, match="state selection 'pbwt'"):
        HaplotypePanel(np.zeros((2, 3, 2), np.int8), np.zeros(3), selection="pbwt")


def _first_fill_by_best(window, allowed, K):
    """The first step's slots by their definition: in turn per query, the first haplotype
    not yet in a slot in :func:`~snpbag.retrieval.states._best`'s order for all K."""
    Q, nh = window.shape
    slot_of = np.full(nh, -1, dtype=np.int64)
    found = np.empty(K, dtype=np.int64)
    order = []
    for _ in range(K):
        for c in range(Q):
            if len(order) == K:
                break
            got = _best(window[c], allowed, slot_of, K, tie_hash(c), found)
            h = next((h for h in found[:got] if slot_of[h] < 0), None)
            if h is not None:
                slot_of[h] = len(order)
                order.append(int(h))
    return order


@pytest.mark.parametrize("seed", range(6))
def test_first_fill_equals_the_per_slot_rule(seed):
    rng = np.random.default_rng(seed)
    nh = int(rng.integers(5, 300))
    Q = int(rng.integers(1, 3))
    window = rng.integers(0, int(rng.integers(1, 12)), (Q, nh)).astype(np.int32)
    allowed = rng.random(nh) < 0.9
    K = int(rng.integers(1, nh + 5))
    want = _first_fill_by_best(window, allowed, K)
    slot_of = np.full(nh, -1, dtype=np.int64)
    seg_start = np.zeros((K, 2), dtype=np.int64)
    seg_hap = np.zeros((K, 2), dtype=np.int64)
    n_seg = np.zeros(K, dtype=np.int64)
    _first_fill(window, allowed, slot_of, K, seg_start, seg_hap, n_seg)
    assert seg_hap[:n_seg.sum(), 0].tolist() == want and (n_seg[:len(want)] == 1).all()


def _best_by_definition(score, allowed, slot_of, want, offset):
    """:func:`~snpbag.retrieval.states._best` by its definition: the rank key 2·score + (0 in a
    slot, 1 not) of the allowed rows sorted, the cut the want-th key; the rows below the cut
    in the rotation from ``offset``, then those at the cut in that rotation until ``want``."""
    keys = np.where(allowed, 2 * score.astype(np.int64) + (slot_of < 0), -1)
    ranked = np.sort(keys[keys >= 0])
    cut = ranked[want - 1] if ranked.size >= want else np.inf
    rotation = (offset % score.size + np.arange(score.size)) % score.size
    below = [h for h in rotation if 0 <= keys[h] < cut]
    return below + [h for h in rotation if keys[h] == cut][:want - len(below)]


@pytest.mark.parametrize("seed", range(40))
def test_best_matches_follow_their_definition(seed):
    """The level-by-level cut and the counted walk (_take) against the sort: unique and tied
    minima, several levels below the cut (the histogram past BEST_LEVELS), fewer allowed
    rows than wanted, rows past a chunk of the walk."""
    rng = np.random.default_rng(seed)
    nh = int(rng.choice([3, 70, 1000]))
    score = rng.integers(0, int(rng.choice([2, 5, 40, 300])), nh).astype(np.int16)
    allowed = rng.random(nh) < rng.choice([0.01, 0.5, 1.0])
    slot_of = np.where(rng.random(nh) < 0.2, rng.integers(0, 50, nh), -1).astype(np.int64)
    for want in (1, 2, 3, 7, nh):
        offset = int(rng.integers(0, 1 << 20))
        out = np.full(nh, -1, dtype=np.int64)
        got = _best(score, allowed, slot_of, want, offset, out)
        assert out[:got].tolist() == _best_by_definition(score, allowed, slot_of, want, offset)


def _slots_by_definition(panel, q, genotype, allowed, K, step, width, matches):
    """composite_slots from its definition: each step's window of mismatches counted straight
    from the panel (no running sums), the matches by _best_by_definition, the first step's
    slots by _first_fill_by_best, then the same slot rule. Returns [(start, hap), ...] per slot."""
    Q = q.shape[1]
    vis = np.flatnonzero((q >= 0).any(1))
    m = vis.size
    n_steps = max(1, -(-m // step))
    bad = np.where(q < 0, -1, (1 - q // 2) if genotype else 1 - q)  # the disagreeing allele
    if genotype:
        bad[q == 1] = -1

    def window(t):
        sites = vis[max(0, t - width) * step:min(m, (t + width + 1) * step)]
        return np.stack([(panel[sites] == bad[sites, c][:, None]).sum(0) for c in range(Q)])

    slots, slot_of, last = [], {}, np.zeros(K, np.int64)
    for h in _first_fill_by_best(window(0), allowed, K):
        slot_of[h] = len(slots)
        slots.append([(0, h)])
    for t in range(1, n_steps):
        w = window(t)
        for c in range(Q):
            held = np.array([slot_of.get(h, -1) for h in range(panel.shape[1])])
            for h in _best_by_definition(w[c], allowed, held, matches, int(tie_hash(t * Q + c))):
                if h in slot_of:
                    last[slot_of[h]] = t
                    continue
                k = int(np.argmin(last))  # the slot matched longest ago (the first on ties)
                if last[k] == t:
                    break
                old_end = min(m, (last[k] + width + 1) * step) - 1
                site = vis[(old_end + min(m - 1, max(0, (t - width) * step)) + 1) // 2]
                del slot_of[slots[k][-1][1]]
                if site <= slots[k][-1][0]:
                    slots[k][-1] = (slots[k][-1][0], h)
                else:
                    slots[k].append((site, h))
                slot_of[h] = k
                last[k] = t
    return slots


@pytest.mark.parametrize("seed", range(8))
def test_composite_slots_follow_their_definition(seed):
    """The running window sums (int8 ring of step counts, int16 window; wider types past 127
    and 32,767), the level-by-level _best and the slot rule against the definition, for
    haplotype and genotype queries, one and two queries, steps past int8's range."""
    rng = np.random.default_rng(seed)
    L, H = int(rng.integers(60, 400)), int(rng.integers(8, 120))
    panel = (rng.random((L, H)) < rng.uniform(0.05, 0.6, L)[:, None]).astype(np.int8)
    genotype = bool(seed % 2)
    Q = 1 + (seed // 2) % 2
    q = (rng.integers(0, 3, (L, Q)) if genotype else rng.integers(0, 2, (L, Q))).astype(np.int8)
    q[rng.random((L, Q)) < 0.3] = -1
    allowed = rng.random(H) < 0.9
    step = int(rng.choice([1, 3, 8, 130]))
    width, matches = int(rng.integers(0, 3)), int(rng.integers(1, 4))
    K = int(rng.integers(1, min(H, 20)))
    seg_start, seg_hap, n_seg = composite_segments(panel, q, allowed=allowed, states=K, genotype=genotype, step=step,
                                                   width=width, matches=matches)
    got = [list(zip(seg_start[k, :n_seg[k]].tolist(), seg_hap[k, :n_seg[k]].tolist())) for k in range(len(n_seg))]
    assert got == _slots_by_definition(panel, q, genotype, allowed, min(K, int(allowed.sum())), step, width, matches)


def test_composite_slots_count_past_int8_within_a_step():
    """A step of 130 sites where some haplotypes mismatch every site: their counts pass
    int8's range, so the running sums must be wider there (against the definition)."""
    rng = np.random.default_rng(3)
    L, H = 400, 30
    panel = (rng.random((L, H)) < 0.8).astype(np.int8)
    panel[:, :10] = 0  # 130 mismatches a step against an all-ALT query
    q = np.ones((L, 1), np.int8)
    allowed = np.ones(H, bool)
    seg_start, seg_hap, n_seg = composite_segments(panel, q, allowed=allowed, states=5, genotype=False, step=130,
                                                   width=0, matches=2)
    got = [list(zip(seg_start[k, :n_seg[k]].tolist(), seg_hap[k, :n_seg[k]].tolist())) for k in range(5)]
    assert got == _slots_by_definition(panel, q, False, allowed, 5, 130, 0, 2)
    assert not {h for slot in got for _, h in slot} & set(range(10))  # the all-REF haplotypes never match
