"""Encoder, heads and SnpbagModel: backend parity, locality, padding, checkpoints, presets."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from snpbag import modeldir
from snpbag.config import ModelConfig, preset
from snpbag.data.batch import collate
from snpbag.data.tokens import IGNORE_INDEX, MASK
from snpbag.errors import CheckpointError, ConfigError
from snpbag.model import HEADS, Head, HeadOutput, build_model, parameter_counts
from snpbag.model.heads import LEVELS
from snpbag.model.embedding import position_features, _wavelengths

ROOT = Path(__file__).resolve().parents[1]
N_SITES = 500


def make_batch(lengths, *, seed=0, n_sites=N_SITES):
    rng = np.random.default_rng(seed)
    items = []
    for s, L in enumerate(lengths):
        start = int(rng.integers(0, n_sites - L + 1))
        truth = rng.integers(0, 3, L)
        masked = rng.random(L) < 0.5
        items.append(dict(
            genotype=np.where(masked, MASK, truth),
            site_index=np.arange(start, start + L),
            position=np.cumsum(rng.integers(1, 5000, L)) + 16_000_000,
            target=np.where(masked, truth, IGNORE_INDEX),
            tile=0, sample=s, offset=start,
        ))
    return collate(items)


def tiny(**kw):
    kw = {"n_sites": N_SITES, "window": 8, "block_size": 4, **kw}
    return preset("tiny", **kw)


def model_for(cfg, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return build_model(cfg).to(dtype)


def valid_hidden(model, batch, **kw):
    h = model.encoder(batch, **kw).hidden
    return h * batch.valid[..., None]


def test_local_backend_matches_dense_reference_end_to_end():
    """Whole model in float64: outputs, loss and every parameter gradient agree."""
    batch = make_batch([45, 30, 7])
    results = {}
    for backend in ("dense", "local"):
        model = model_for(tiny(backend=backend), dtype=torch.float64)
        out = model(batch)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        results[backend] = (out.logits * batch.valid[..., None], out.loss, grads)
    (l0, loss0, g0), (l1, loss1, g1) = results["dense"], results["local"]
    torch.testing.assert_close(l1, l0, rtol=0, atol=1e-10)
    torch.testing.assert_close(loss1, loss0, rtol=0, atol=1e-12)
    assert g0.keys() == g1.keys()
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], rtol=0, atol=1e-10, msg=lambda m: f"{n}: {m}")


def test_receptive_field_is_exactly_layers_times_half_window():
    cfg = tiny(n_layers=3, window=6)  # half = 3: receptive field 9 each side
    model = model_for(cfg, dtype=torch.float64).eval()
    batch = make_batch([60])
    j, rf = 30, cfg.n_layers * (cfg.window // 2)
    changed = batch.replace(genotype=batch.genotype.clone())
    changed.genotype[0, j] = 2 if batch.genotype[0, j] != 2 else 0
    with torch.no_grad():
        a, b = valid_hidden(model, batch)[0], valid_hidden(model, changed)[0]
    diff = (a - b).abs().amax(-1)  # (L,)
    dist = (torch.arange(60) - j).abs()
    assert (diff[dist > rf] == 0).all()
    assert (diff[dist <= rf] > 0).all()  # the field is not smaller than claimed either


def test_padding_neither_changes_nor_leaks_into_real_tokens():
    model = model_for(tiny(), dtype=torch.float64).eval()
    both = make_batch([40, 23], seed=3)
    row = {k: getattr(both, k)[1:2, :23] for k in ("genotype", "site_index", "position", "valid", "target")}
    single = both.replace(**row, tile=both.tile[1:], sample=both.sample[1:], offset=both.offset[1:])
    scribbled = both.replace(genotype=both.genotype.clone(), site_index=both.site_index.clone())
    scribbled.genotype[1, 23:] = MASK
    scribbled.site_index[1, 23:] = N_SITES - 1
    with torch.no_grad():
        h_both = model.encoder(both).hidden
        h_single = model.encoder(single).hidden
        h_scrib = model.encoder(scribbled).hidden
    torch.testing.assert_close(h_both[1, :23], h_single[0], rtol=0, atol=1e-12)
    assert torch.equal(h_both[:, :23][both.valid[:, :23]], h_scrib[:, :23][both.valid[:, :23]])
    assert torch.isfinite(h_both).all()


def test_genotype_head_loss_is_masked_cross_entropy():
    model = model_for(tiny())
    batch = make_batch([30, 12], seed=1)
    out = model(batch)
    assert out.logits.shape == (2, 30, 3)
    keep = (batch.target != IGNORE_INDEX) & batch.valid
    expected = F.cross_entropy(out.logits[keep], batch.target[keep])
    torch.testing.assert_close(out.loss, expected)
    assert int(out.extras["n_targets"]) == int(keep.sum())
    # no target anywhere: loss 0 with a graph, never NaN
    none = model(batch.replace(target=torch.full_like(batch.target, IGNORE_INDEX)))
    assert none.loss.item() == 0.0 and none.loss.requires_grad
    assert model(batch.replace(target=None)).loss is None


def test_attention_maps_only_on_request():
    model = model_for(tiny()).eval()
    batch = make_batch([20, 9])
    with torch.no_grad():
        plain = model(batch)
        maps = model(batch, return_attn=True)
    assert "attentions" not in plain.extras
    att = maps.extras["attentions"]
    assert len(att) == 2 and att[0].shape == (2, 4, 20, 2 * (8 // 2) + 1)
    torch.testing.assert_close(maps.logits, plain.logits)


def test_activation_checkpointing_same_outputs_gradients_and_keys():
    batch = make_batch([33, 20])
    runs = {}
    for ac in (False, True):
        model = model_for(tiny(activation_checkpointing=ac), dtype=torch.float64).train()
        out = model(batch)
        out.loss.backward()
        runs[ac] = (model, out.logits, {n: p.grad for n, p in model.named_parameters()})
    torch.testing.assert_close(runs[True][1], runs[False][1], rtol=0, atol=0)
    for n, g in runs[False][2].items():
        torch.testing.assert_close(runs[True][2][n], g, rtol=0, atol=1e-12)
    assert list(runs[True][0].state_dict()) == list(runs[False][0].state_dict())


def test_compile_option_keeps_state_dict_keys():
    plain = build_model(tiny())
    compiled = build_model(tiny(compile=True))  # compilation itself is lazy: nothing runs here
    assert list(compiled.state_dict()) == list(plain.state_dict())


def test_save_load_round_trip(tmp_path):
    model = model_for(tiny(activation_checkpointing=True, window=10)).eval()
    batch = make_batch([25, 11])
    modeldir.save_model(model, tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {modeldir.WEIGHTS_FILE, modeldir.CONFIG_FILE}
    meta = json.loads((tmp_path / "m" / modeldir.CONFIG_FILE).read_text())
    assert meta["head"] == {"name": "genotype", "options": {}} and meta["model"]["window"] == 10
    # loads with activation checkpointing switched off: the weights do not care
    back = modeldir.load_model(tmp_path / "m", overrides={"activation_checkpointing": False}).eval()
    assert back.config == ModelConfig(**{**model.config.to_dict(), "activation_checkpointing": False})
    with torch.no_grad():
        torch.testing.assert_close(back(batch).logits, model(batch).logits, rtol=0, atol=0)
    modeldir.save_model(model, tmp_path / "m")  # saving again replaces the model in place
    assert not list(tmp_path.glob("m/.*tmp*"))


def test_saved_configs_with_renamed_keys_still_load(tmp_path):
    """A model directory written before model.neighbours_k/_window became retrieval_k/_span
    loads under the new names (configs and overrides refuse the old ones instead)."""
    model = model_for(tiny(retrieval_k=3, retrieval_span=16)).eval()
    modeldir.save_model(model, tmp_path / "m")
    meta_file = tmp_path / "m" / modeldir.CONFIG_FILE
    meta = json.loads(meta_file.read_text())
    meta["model"]["neighbours_k"] = meta["model"].pop("retrieval_k")
    meta["model"]["neighbours_window"] = meta["model"].pop("retrieval_span")
    meta_file.write_text(json.dumps(meta))
    back = modeldir.load_model(tmp_path / "m")
    assert back.config == model.config and (back.config.retrieval_k, back.config.retrieval_span) == (3, 16)
    assert ModelConfig.from_dict(meta["model"]) == model.config  # a checkpoint's config reads the same way
    with pytest.raises(ConfigError, match="model.neighbours_k was renamed model.retrieval_k"):
        ModelConfig.from_dict(meta["model"], saved=False)


class _ToyPhaseHead(Head):
    name = "toy_phase"
    level = "site"

    def __init__(self, cfg, *, width=2):
        super().__init__(cfg, width=width)
        self.proj = torch.nn.Linear(cfg.d_model, width)

    def forward(self, enc_out, batch):
        return HeadOutput(loss=None, logits=self.proj(enc_out.hidden))


def test_head_swap_keeps_encoder_weights(tmp_path, monkeypatch):
    monkeypatch.setitem(HEADS, "toy_phase", _ToyPhaseHead)
    model = model_for(tiny())
    modeldir.save_model(model, tmp_path / "m")
    swapped = modeldir.load_model(tmp_path / "m", head="toy_phase", head_options={"width": 5})
    assert isinstance(swapped.head, _ToyPhaseHead) and swapped.head.proj.out_features == 5
    for (n, p), (n2, p2) in zip(model.encoder.state_dict().items(), swapped.encoder.state_dict().items()):
        assert n == n2 and torch.equal(p, p2)
    # and the fine-tuned model saves and reloads with its new head
    modeldir.save_model(swapped, tmp_path / "ft")
    again = modeldir.load_model(tmp_path / "ft")
    assert again.head_name == "toy_phase" and again.head.options == {"width": 5}
    assert torch.equal(again.head.proj.weight, swapped.head.proj.weight)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="not a model directory \\(no model.json\\)"):
        modeldir.load_model(tmp_path)
    modeldir.save_model(model_for(tiny()), tmp_path / "m")
    meta_file = tmp_path / "m" / modeldir.CONFIG_FILE
    meta = json.loads(meta_file.read_text())
    meta["model"]["d_model"] = 32
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="model.safetensors: weights do not match model.json"):
        modeldir.load_model(tmp_path / "m")
    with pytest.raises(ConfigError, match=r"cannot override \['n_layers'\]"):
        modeldir.load_model(tmp_path / "m", overrides={"n_layers": 3})
    meta_file.write_text("{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        modeldir.load_model(tmp_path / "m")


def test_build_errors():
    with pytest.raises(ConfigError, match="model.n_sites=0: set it to the number of sites"):
        build_model(preset("tiny"))
    with pytest.raises(ConfigError, match="unknown head 'nope'"):
        build_model(tiny(), "nope")
    with pytest.raises(ConfigError, match="does not accept options"):
        build_model(tiny(), head_options={"colour": 1})
    with pytest.raises(ConfigError, match="unknown model preset 'huge'"):
        preset("huge")


def test_registry_names_match_heads_and_configs():
    assert HEADS["genotype"].name == "genotype"
    assert all(cls.name == name and cls.level in LEVELS for name, cls in HEADS.items())
    tasks = sorted((ROOT / "configs" / "task").glob("*.yaml"))
    for f in tasks:
        head = (yaml.safe_load(f.read_text()) or {}).get("head") or {}
        if "name" in head:
            assert head["name"] in HEADS, f"{f.name}: head {head['name']!r} is not in HEADS"


def test_parameter_counts_of_presets():
    # per block 12 d^2 + 13 d (d_ff = 4d); base = the paper's 16 x 16 x 512 encoder
    c = parameter_counts(preset("base", n_sites=6_030_514))
    assert c["blocks"] == 16 * (12 * 512**2 + 13 * 512) == 50_438_144
    assert c["site_table"] == 6_030_514 * 32
    tiny_model = build_model(preset("tiny", n_sites=1000))
    assert parameter_counts(preset("tiny", n_sites=1000))["total"] == sum(p.numel() for p in tiny_model.parameters())


def test_position_features_exact_at_chromosome_scale():
    wl = _wavelengths()
    assert wl[0] == 16 and wl[-1] == 2**28
    pos = torch.tensor([[5, 248_956_421, 248_956_421 + 16]])
    f = position_features(pos, wl)
    # 16 bp apart is a whole period of the shortest wavelength, even above float32's 2**24
    torch.testing.assert_close(f[0, 1, 0], f[0, 2, 0], rtol=0, atol=1e-6)
    assert f.shape == (1, 3, 64)


def test_tiny_preset_trains_at_paper_length_on_cpu():
    """Forward + backward of the tiny preset over one 81,920-site tile (~5 s on 1 core)."""
    L = 81_920
    model = model_for(preset("tiny", n_sites=L))
    batch = make_batch([L], n_sites=L)
    out = model(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_site_tables_start_at_unit_variance_after_their_multiplier():
    """The per-site tables are stored at 1 / SITE_SCALE (snpbag.model.embedding); however the
    encoder is built, and after reset_parameters, the codes the model sees have std ~1."""
    from snpbag.model.embedding import SITE_SCALE
    from snpbag.model.encoder import Encoder

    torch.manual_seed(0)
    cfg = preset("tiny", n_sites=5000)
    for encoder in (Encoder(cfg), build_model(cfg).encoder):
        encoder.reset_parameters()
        for table in (encoder.embed.site, encoder.embed.allele):
            assert float(table.weight.std()) * SITE_SCALE == pytest.approx(1.0, rel=0.02)
