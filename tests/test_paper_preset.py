"""The published architecture as options of the one encoder: the binary site code, SwiGLU,
RMSNorm, the snpbag_paper preset, and the panel-free configuration (model.retrieval=none)."""

import numpy as np
import pytest
import torch

from snpbag import modeldir
from snpbag.config import preset
from snpbag.errors import ConfigError
from snpbag.model import build_model, parameter_counts
from snpbag.model.embedding import SITE_CODE_BITS, site_code
from snpbag.model.flops import encoder_matmul_params, model_flops_per_token
from tests.test_encoder import make_batch

N_SITES = 500


def paper_like(**kw):
    """The paper's design at test size."""
    kw = {"n_sites": N_SITES, "window": 8, "block_size": 4, "site_code": "binary", "site_dim": None,
          "ffn": "swiglu", "norm": "rmsnorm", "d_ff": 96, **kw}
    return preset("tiny", **kw)


def test_binary_codes_are_distinct_fixed_bits_of_the_index():
    idx = torch.arange(100_000)
    code = site_code(idx)
    assert code.shape == (100_000, SITE_CODE_BITS)
    assert set(code.unique().tolist()) == {-1.0, 1.0}
    assert torch.unique(code, dim=0).shape[0] == 100_000  # every site its own code
    # least significant bit first: index 5 = 0b101
    assert code[5, :4].tolist() == [1.0, -1.0, 1.0, -1.0]
    assert (code[:, 17:] == -1).all()  # indices below 2**17 leave the high bits off
    big = torch.tensor([6_030_513, 2**32 - 1])
    bits = ((site_code(big) + 1) / 2).long()  # (2, BITS) 0/1
    assert (bits << torch.arange(SITE_CODE_BITS)).sum(-1).tolist() == big.tolist()


def test_binary_code_has_no_parameter_table():
    """The parameter count does not grow with the vocabulary; the table design's does."""
    small, huge = (parameter_counts(paper_like(n_sites=n)) for n in (1_000, 6_030_514))
    assert small == huge and small["site_table"] == 0
    model = build_model(paper_like())
    assert not any(p.shape[0] == N_SITES for p in model.parameters())
    table = [parameter_counts(preset("tiny", n_sites=n))["total"] for n in (1_000, 2_000)]
    assert table[1] - table[0] == 2 * 1_000 * 16  # site and allele tables, site_dim 16


def test_binary_code_is_stable_across_a_vocabulary_reload(tmp_path):
    """A saved and reloaded model (and a model built for a larger vocabulary with the same
    weights) embeds the same site index the same way: the code is a function of the index."""
    torch.manual_seed(0)
    model = build_model(paper_like()).eval()
    batch = make_batch([40, 25])
    modeldir.save_model(model, tmp_path / "m")
    again = modeldir.load_model(tmp_path / "m").eval()
    bigger = build_model(paper_like(n_sites=10 * N_SITES)).eval()
    state = {k: v for k, v in model.state_dict().items() if "site_af" not in k}
    bigger.load_state_dict(state, strict=False)
    with torch.no_grad():
        ref = model.encoder(batch).hidden
        assert torch.equal(again.encoder(batch).hidden, ref)
        assert torch.equal(bigger.encoder(batch).hidden, ref)


def test_paper_preset_parameter_count_by_hand():
    cfg = preset("snpbag_paper", n_sites=6_030_514)
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_ff, cfg.window) == (16, 16, 512, 1024, 256)
    assert (cfg.site_code, cfg.ffn, cfg.norm, cfg.site_dim) == ("binary", "swiglu", "rmsnorm", None)
    D, F, G = 512, 1024, cfg.genotype_dim
    block = (D                      # ln1 (RMSNorm: weight only)
             + D * 3 * D + 3 * D    # qkv
             + D * D + D            # attention output
             + D                    # ln2
             + D * 2 * F            # SwiGLU gate and value, no bias
             + F * D)               # fc2, no bias
    embedding = 5 * G + (SITE_CODE_BITS + G) * D + (64 * D + D) + (4 * D + D)  # genotype, code, position, AF
    head = D * D + D + 2 * D + D * 3 + 3
    counts = parameter_counts(cfg)
    print(f"snpbag_paper: {counts['total']:,} parameters ({counts})")
    assert counts == {"site_table": 0, "embedding_other": embedding, "blocks": 16 * block, "final_norm": D,
                      "head": head, "total": embedding + 16 * block + D + head}
    assert counts["total"] == 42_326_691
    assert encoder_matmul_params(n_layers=16, d_model=D, d_ff=F, ffn="swiglu") == 16 * (4 * D * D + 3 * D * F)
    assert model_flops_per_token(cfg) == 6 * 16 * (4 * D * D + 3 * D * F) + 12 * 16 * D * 256


def test_paper_preset_trains_a_step_on_cpu():
    torch.manual_seed(0)
    model = build_model(preset("snpbag_paper", n_sites=N_SITES, backend="local"))
    batch = make_batch([24, 16])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    moved = [not torch.equal(a, p) for a, p in zip(before, model.parameters())]
    assert all(moved)
    assert torch.isfinite(model(batch).loss)


@pytest.mark.parametrize("backend", ["local", "flex"])
def test_backends_agree_with_rmsnorm_swiglu_and_binary_code(backend):
    """Every CPU backend gives the dense reference's outputs (and, where it has a backward,
    gradients) with the paper's norm, feed-forward and site code."""
    batch = make_batch([45, 30, 7])
    results = {}
    for name in ("dense", backend):
        torch.manual_seed(0)
        model = build_model(paper_like(backend=name)).double()
        grads = None
        if name == "flex":  # no CPU backward in torch (tests/test_attention.py): forward only
            with torch.no_grad():
                out = model(batch)
        else:
            out = model(batch)
            out.loss.backward()
            grads = [p.grad.clone() for p in model.parameters()]
        results[name] = (out.logits.detach() * batch.valid[..., None], grads)
    torch.testing.assert_close(results[backend][0], results["dense"][0], atol=1e-9, rtol=1e-7)
    if results[backend][1] is not None:
        for a, b in zip(results[backend][1], results["dense"][1]):
            torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)


def test_options_choose_the_modules():
    model = build_model(paper_like())
    block = model.encoder.blocks[0]
    assert isinstance(block.ln1, torch.nn.RMSNorm) and isinstance(model.encoder.ln_f, torch.nn.RMSNorm)
    assert block.fc1.weight.shape == (2 * 96, 64) and block.fc1.bias is None
    default = build_model(preset("tiny", n_sites=N_SITES)).encoder.blocks[0]
    assert isinstance(default.ln1, torch.nn.LayerNorm) and isinstance(default.act, torch.nn.GELU)


@pytest.mark.parametrize("over, match", [
    ({"ffn": "relu"}, r"model.ffn='relu'; choose one of \('gelu', 'swiglu'\)"),
    ({"norm": "batchnorm"}, r"model.norm='batchnorm'; choose one of"),
    ({"site_code": "hash"}, r"model.site_code='hash'; choose one of \('table', 'binary'\)"),
    ({"site_code": "binary"}, r"model.site_dim=16: site_code=binary has no per-site table; drop model.site_dim"),
    ({"site_dim": None}, r"model.site_dim is not set: site_code=table needs"),
    ({"genotype_dim": 0}, r"model.genotype_dim=0 must be > 0"),
    ({"retrieval": "none", "retrieval_k": 4}, r"model.retrieval=none with model.retrieval_k=4: set model.retrieval_k=0"),
])
def test_bad_options_are_refused(over, match):
    with pytest.raises(ConfigError, match=match):
        preset("tiny", **over)


def test_retrieval_none_is_panel_free_for_every_head():
    from snpbag.model.heads import HEADS
    from snpbag.retrieval.kinds import options

    cfg = preset("tiny", n_sites=N_SITES, retrieval="none")
    assert not cfg.uses_panel and options(cfg) is None
    assert preset("tiny", n_sites=N_SITES, retrieval="haplotypes", retrieval_k=8).uses_panel
    for name in HEADS:
        if HEADS[name].needs_panel:  # the phasing head's prior is the copying model over the panel
            with pytest.raises(ConfigError, match="model.retrieval=haplotypes"):
                build_model(cfg, name)
            continue
        model = build_model(cfg, name)
        assert model.encoder.neighbour_in is None, name
    with pytest.raises(ConfigError, match="retrieval_prior=true needs a retrieval input"):
        build_model(cfg, "genotype", head_options={"retrieval_prior": True})
    out = build_model(cfg)(make_batch([20]))
    assert np.isfinite(out.loss.item())
