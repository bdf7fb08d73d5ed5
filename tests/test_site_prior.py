"""The site allele-frequency prior: HWE log-prior in the genotype head, AF features in the
embedding, carried in the weights (save/load, head swap, export), set from the store by
the trainer, validated at the boundary."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from snpbag import modeldir
from snpbag.config import preset
from snpbag.data.batch import collate
from snpbag.data.tokens import IGNORE_INDEX, MASK, MISSING
from snpbag.errors import CheckpointError, ConfigError
from snpbag.eval.metrics import hwe_genotype_probs
from snpbag.model import HEADS, Head, HeadOutput, build_model
from snpbag.model.embedding import AF_EPS, UNKNOWN_AF, af_features, hwe_log_prior
from snpbag.model.heads import MaskedGenotypeHead
from snpbag.train.metrics import GenotypeAccuracy, hwe_guess

torch.set_num_threads(1)

N_SITES = 200


def make_batch(lengths, *, seed=0, n_sites=N_SITES, mask_rate=0.7):
    rng = np.random.default_rng(seed)
    items = []
    for s, L in enumerate(lengths):
        start = int(rng.integers(0, n_sites - L + 1))
        truth = rng.integers(0, 3, L)
        masked = rng.random(L) < mask_rate
        items.append(dict(
            genotype=np.where(masked, MASK, truth), site_index=np.arange(start, start + L),
            position=np.cumsum(rng.integers(1, 5000, L)) + 16_000_000,
            target=np.where(masked, truth, IGNORE_INDEX), tile=0, sample=s, offset=start,
        ))
    return collate(items)


def random_af(seed=1, n=N_SITES):
    return np.random.default_rng(seed).uniform(0.01, 0.99, n).astype(np.float32)


def tiny(**kw):
    return preset("tiny", **{"n_sites": N_SITES, "window": 8, "block_size": 4, **kw})


def model_with_prior(af=None, *, seed=0, **head_options):
    torch.manual_seed(seed)
    return build_model(tiny(), head_options=head_options or None, site_af=random_af() if af is None else af)


def test_hwe_log_prior_matches_numpy_reference():
    af = torch.tensor([0.0, 1e-4, 0.01, 0.3, 0.5, 0.77, 1.0, UNKNOWN_AF, float("nan")])
    got = hwe_log_prior(af)
    p = np.clip(af[:7].numpy().astype(np.float64), AF_EPS, 1 - AF_EPS)
    torch.testing.assert_close(got[:7], torch.as_tensor(np.log(hwe_genotype_probs(p)), dtype=torch.float32),
                               rtol=1e-5, atol=1e-6)  # float32 clamp at 1 - 1e-3
    assert torch.equal(got[7:], torch.zeros(2, 3))  # unknown (and NaN): a flat prior
    f = af_features(af)
    assert torch.equal(f[7:], torch.zeros(2, 4)) and torch.all(f[:7, 0] == 1)
    assert torch.isfinite(got).all() and torch.isfinite(f).all()


def test_untrained_model_predicts_the_af_baseline():
    """With the head's correction at zero, logits are exactly the HWE log-prior: the argmax
    is the AF baseline's guess and the loss is the baseline's cross-entropy."""
    af = random_af()
    model = model_with_prior(af).eval()
    torch.nn.init.zeros_(model.head.mlp[-1].weight)
    batch = make_batch([60, 41, 17])
    with torch.no_grad():
        out = model(batch)
    expected = hwe_log_prior(torch.as_tensor(af)[batch.site_index])
    torch.testing.assert_close(out.logits, expected, rtol=0, atol=0)
    scored = batch.target != IGNORE_INDEX
    assert torch.equal(out.logits.argmax(-1)[scored], hwe_guess(af)[batch.site_index][scored])
    metric = GenotypeAccuracy(af)  # AF in [0.01, 0.99]: its clip (1e-4) and ours (1e-3) do not bite
    metric.update(out.logits, batch.target, batch.site_index)
    m = metric.compute()
    assert float(m["acc"]) == float(m["base_acc"])
    assert float(out.loss) == pytest.approx(float(m["base_loss"]), rel=1e-5)


def test_prior_travels_with_the_weights(tmp_path):
    af = random_af()
    af[5] = np.nan  # a site with nothing called: stored as unknown
    model = model_with_prior(af).eval()
    modeldir.save_model(model, tmp_path / "m")
    state = load_file(str(tmp_path / "m" / modeldir.WEIGHTS_FILE))
    stored = np.where(np.isnan(af), UNKNOWN_AF, af)
    for key in ("encoder.embed.site_af", "head.site_af"):
        np.testing.assert_array_equal(state[key].numpy(), stored)
    back = modeldir.load_model(tmp_path / "m").eval()
    assert torch.equal(back.site_af, model.site_af) and torch.equal(back.head.site_af, model.head.site_af)
    batch = make_batch([50, 9])
    with torch.no_grad():
        torch.testing.assert_close(back(batch).logits, model(batch).logits, rtol=0, atol=0)
    # changing the prior changes the prediction: the file, not the caller, decides it
    other = back.eval()
    other.set_site_prior(random_af(seed=9))
    with torch.no_grad():
        assert not torch.allclose(other(batch).logits, model(batch).logits)


class _PriorHead(MaskedGenotypeHead):
    name = "prior_test_head"


class _PlainHead(Head):
    name = "plain_test_head"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.proj = torch.nn.Linear(cfg.d_model, 2)

    def forward(self, enc_out, batch):
        return HeadOutput(loss=None, logits=self.proj(enc_out.hidden))


def test_a_swapped_head_takes_the_encoders_prior(tmp_path, monkeypatch):
    monkeypatch.setitem(HEADS, _PriorHead.name, _PriorHead)
    monkeypatch.setitem(HEADS, _PlainHead.name, _PlainHead)
    model = model_with_prior()
    modeldir.save_model(model, tmp_path / "m")
    swapped = modeldir.load_model(tmp_path / "m", head=_PriorHead.name)
    assert torch.equal(swapped.head.site_af, model.site_af)
    plain = modeldir.load_model(tmp_path / "m", head=_PlainHead.name)  # a head without a prior loads too
    assert torch.equal(plain.site_af, model.site_af) and not hasattr(plain.head, "site_af")


def test_prior_option_off_is_saved_and_ignores_af(tmp_path):
    batch = make_batch([30])
    a = model_with_prior(random_af(1), prior=False).eval()
    b = model_with_prior(random_af(1), prior=False).eval()
    b.head.set_site_prior(random_af(2))  # the head's AF is unused when the prior is off
    with torch.no_grad():
        torch.testing.assert_close(a(batch).logits, b(batch).logits, rtol=0, atol=0)
    modeldir.save_model(a, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / modeldir.CONFIG_FILE).read_text())
    assert meta["head"]["options"] == {"prior": False}
    assert modeldir.load_model(tmp_path / "m").head.use_prior is False
    assert model_with_prior().head.options == {}  # the default head saves no options
    with pytest.raises(ConfigError, match="prior='yes' must be true or false"):
        build_model(tiny(), head_options={"prior": "yes"})


def test_set_site_prior_checks_its_input():
    model = build_model(tiny())
    assert torch.all(model.site_af == UNKNOWN_AF)  # unknown until set
    with pytest.raises(ConfigError, match=f"199 values for a model of n_sites={N_SITES}"):
        model.set_site_prior(np.full(N_SITES - 1, 0.5))
    bad = np.full(N_SITES, 0.5)
    bad[17] = 1.5
    with pytest.raises(ConfigError, match="site 17 has AF 1.5, outside"):
        model.set_site_prior(bad)
    with pytest.raises(ConfigError, match="outside"):
        build_model(tiny(), site_af=-bad)


def test_model_directories_from_before_the_prior_are_refused(tmp_path):
    modeldir.save_model(model_with_prior(), tmp_path / "m")
    meta_file = tmp_path / "m" / modeldir.CONFIG_FILE
    meta = json.loads(meta_file.read_text())
    meta["version"] = 1
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="predates the site allele-frequency prior"):
        modeldir.load_model(tmp_path / "m")


def test_prior_is_kept_in_fp32_under_bf16_autocast():
    model = model_with_prior().eval()
    batch = make_batch([40])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch)
    assert out.logits.dtype == torch.float32


def test_missing_tokens_and_padding_get_the_prior_too():
    """MISSING inputs are predicted like MASK ones (from context + prior); padding carries no loss."""
    af = random_af()
    model = model_with_prior(af).eval()
    torch.nn.init.zeros_(model.head.mlp[-1].weight)
    batch = make_batch([20, 5])
    batch.genotype[0, 3] = MISSING
    with torch.no_grad():
        out = model(batch)
    expected = hwe_log_prior(torch.as_tensor(af)[batch.site_index])
    torch.testing.assert_close(out.logits, expected, rtol=0, atol=0)


def test_trainer_builds_the_model_with_the_stores_af(tmp_path):
    from tiny_data import tiny_store

    from snpbag.store.genotypes import open_store
    from snpbag.train.run import compose_config, model_for_run, to_train_config

    store = tiny_store(tmp_path / "tiny", n_sites=120)
    vocab = open_store(store).vocab
    cfg = to_train_config(compose_config([f"data.store={store}", "model=tiny", "logger=none"]))
    model = model_for_run(cfg, vocab)
    expected = torch.as_tensor(np.nan_to_num(vocab.af.astype(np.float32), nan=UNKNOWN_AF))
    assert torch.equal(model.site_af, expected) and torch.equal(model.head.site_af, expected)


def test_retrieval_prior_replaces_the_hwe_prior_with_the_retrieval_input(tmp_path):
    """head option retrieval_prior: with the correction at zero the logits are the log of the
    batch's retrieval probabilities (plus the floor), so the untrained model predicts what the
    copying model does; it is saved, and refused without a retrieval input."""
    torch.manual_seed(0)
    model = build_model(tiny(retrieval_k=4, retrieval="haplotypes"), head_options={"retrieval_prior": True},
                        site_af=random_af()).eval()
    torch.nn.init.zeros_(model.head.mlp[-1].weight)
    batch = make_batch([25, 9])
    probs = torch.distributions.Dirichlet(torch.ones(3)).sample(batch.site_index.shape)
    batch = batch.replace(retrieval=probs)
    with torch.no_grad():
        out = model(batch)
    from snpbag.model.heads.genotype import RETRIEVAL_FLOOR

    torch.testing.assert_close(out.logits, torch.log(probs + RETRIEVAL_FLOOR), rtol=0, atol=0)
    modeldir.save_model(model, tmp_path / "m")
    assert json.loads((tmp_path / "m" / modeldir.CONFIG_FILE).read_text())["head"]["options"] == {"retrieval_prior": True}
    assert modeldir.load_model(tmp_path / "m").head.retrieval_prior is True
    with pytest.raises(ConfigError, match="retrieval_prior=true needs a retrieval input"):
        build_model(tiny(), head_options={"retrieval_prior": True})


# --- the genotype head's per-site readout (site_rank) -----------------------------------------


def test_site_readout_matches_a_loop_over_sites():
    from snpbag.model.heads.genotype import site_readout

    g = torch.Generator().manual_seed(0)
    r, scale = 3, 2.5
    table = torch.nn.Embedding(7, 3 * (r + 1))
    torch.nn.init.normal_(table.weight, generator=g)
    row = torch.randint(0, 7, (2, 5), generator=g)
    u = torch.randn(2, 5, r, generator=g)
    got = site_readout(table, row, u, scale)
    want = torch.empty(2, 5, 3)
    for b in range(2):
        for i in range(5):
            w = table.weight[row[b, i]].view(3, r + 1) * scale
            want[b, i] = w[:, :r] @ u[b, i] + w[:, r]
    torch.testing.assert_close(got, want)


def test_per_site_readout_counts_starts_at_the_shared_head_and_learns_per_site():
    base, ranked = model_with_prior(), model_with_prior(site_rank=4, site_scale=10.0)
    d = base.config.d_model
    n_base = sum(p.numel() for p in base.head.parameters())
    assert sum(p.numel() for p in ranked.head.parameters()) == n_base + (d * 4 + 4) + N_SITES * 3 * (4 + 1)
    assert base.head.options == {} and ranked.head.options == {"site_rank": 4, "site_scale": 10.0}
    batch = make_batch([30, 20])
    out = ranked(batch)
    assert out.logits.shape == (2, 30, 3)
    torch.testing.assert_close(out.logits, base(batch).logits)  # zero rows: the shared head's prediction
    out.loss.backward()
    grad = ranked.head.site_out.weight.grad.abs().sum(1)  # (N_SITES,)
    seen = torch.zeros(N_SITES, dtype=torch.bool)
    seen[batch.site_index[batch.target != IGNORE_INDEX]] = True
    assert (grad[seen] > 0).all() and (grad[~seen] == 0).all()  # a site's row learns from that site only


@pytest.mark.parametrize("options, message", [
    ({"site_rank": -1}, "site_rank=-1 must be an integer >= 0"),
    ({"site_rank": True}, "site_rank=True must be an integer >= 0"),
    ({"site_rank": 2, "site_scale": 0.0}, "site_scale=0.0 must be > 0"),
])
def test_per_site_readout_options_are_checked(options, message):
    with pytest.raises(ConfigError, match=message):
        model_with_prior(**options)
