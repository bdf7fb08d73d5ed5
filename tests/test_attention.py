"""Sliding-window attention backends against a naive loop and an explicit dense band mask."""

import math
import warnings
from unittest import mock

import pytest
import torch

from conftest import requires_cuda
from snpbag.errors import ConfigError
from snpbag.model.attention import (
    BACKENDS,
    FLEX_TILE,
    FlexPlan,
    band_mask,
    band_to_dense,
    dense_to_band,
    flash_available,
    half_window,
    plan_attention,
    resolve_backend,
    sliding_window_attention,
)

# (L, block_size, window): lengths that are and are not multiples of the block, windows of 1
# (self only), even and odd, wider than a block, and wider than the sequence
CASES = [(37, 8, 5), (64, 16, 32), (10, 4, 100), (33, 8, 1), (40, 8, 17), (1, 8, 7), (50, 16, 128)]
TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


def _inputs(L, *, dtype, B=3, H=2, D=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    valid = torch.ones(B, L, dtype=torch.bool)
    valid[1, (L + 1) // 2 :] = False  # right padding
    valid[2, 1:] = False  # a one-token sequence
    q, k, v = (torch.randn(B, L, H, D, generator=g, dtype=dtype).requires_grad_() for _ in range(3))
    # loss weights: padded query outputs are meaningless, so they carry no loss
    w = torch.randn(B, L, H, D, generator=g, dtype=dtype) * valid[:, :, None, None]
    return q, k, v, valid, w


def _run(backend, q, k, v, valid, w, *, window, block_size, grad=True):
    out, _ = sliding_window_attention(q, k, v, valid, window=window, backend=backend, block_size=block_size)
    out = out * valid[:, :, None, None]
    if not grad:
        return out, None
    return out.detach(), torch.autograd.grad((out * w).sum(), (q, k, v))


def naive_attention(q, k, v, valid, *, window):
    """Loop over queries; the definition in attention.py's docstring, written out."""
    B, L, H, D = q.shape
    half = window // 2
    out = torch.zeros_like(q)
    for b in range(B):
        for i in range(L):
            if not valid[b, i]:
                continue
            keys = [j for j in range(L) if abs(i - j) <= half and valid[b, j]]
            s = torch.einsum("hd,khd->hk", q[b, i], k[b, keys]) / math.sqrt(D)
            out[b, i] = torch.einsum("hk,khd->hd", s.softmax(-1), v[b, keys])
    return out


@pytest.mark.parametrize("L,bs,window", CASES[:4])
def test_dense_reference_matches_naive_loop(L, bs, window):
    q, k, v, valid, w = _inputs(L, dtype=torch.float64)
    with torch.no_grad():
        ref = naive_attention(q, k, v, valid, window=window)
        out, _ = _run("dense", q, k, v, valid, w, window=window, block_size=bs, grad=False)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("L,bs,window", CASES)
def test_local_matches_dense_outputs_and_gradients(L, bs, window, dtype):
    q, k, v, valid, w = _inputs(L, dtype=dtype)
    ref_out, ref_grads = _run("dense", q, k, v, valid, w, window=window, block_size=bs)
    out, grads = _run("local", q, k, v, valid, w, window=window, block_size=bs)
    tol = TOL[dtype]
    torch.testing.assert_close(out, ref_out, rtol=0, atol=tol)
    for g, rg, name in zip(grads, ref_grads, "qkv"):
        torch.testing.assert_close(g, rg, rtol=0, atol=tol, msg=lambda m: f"d{name}: {m}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("L,bs,window", [(37, 8, 5), (64, 16, 32), (10, 4, 100), (40, 8, 17)])
def test_flex_forward_matches_dense_on_cpu(L, bs, window, dtype):
    """On CPU torch's flex_attention has no backward and runs an eager dense reference, so only
    the forward (and so the BlockMask built from block indices) is checked here."""
    q, k, v, valid, w = _inputs(L, dtype=dtype)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, _ = _run("dense", q, k, v, valid, w, window=window, block_size=bs, grad=False)
        out, _ = _run("flex", q, k, v, valid, w, window=window, block_size=bs, grad=False)
    torch.testing.assert_close(out, ref, rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("L,bs,window", [(37, 8, 5), (64, 16, 32), (10, 4, 100), (40, 8, 17), (96, 8, 40)])
def test_flex_block_classification_against_dense_mask(L, bs, window):
    """Full blocks skip mask_mod on GPU (the CPU eager path applies it everywhere), so check
    the classification itself: a full tile is all-allowed, every allowed pair is in some tile."""
    _, _, _, valid, _ = _inputs(L, dtype=torch.float32)
    plan = plan_attention(valid, window=window, backend="flex", block_size=bs)
    assert (plan.sparse_block, plan.nb) == (bs, -(-L // bs))
    nb, Lp = plan.nb, plan.Lp
    vpad = torch.nn.functional.pad(valid, (0, Lp - L), value=False)
    tiles = band_mask(vpad, window=window).view(3, nb, bs, nb, bs).permute(0, 1, 3, 2, 4)
    full, partial = plan.full_blocks, plan.partial_blocks
    assert not (full & partial).any()
    assert tiles.flatten(-2).all(-1)[full].all()
    assert not (tiles.flatten(-2).any(-1) & ~(full | partial)).any()


# (B, L): lengths across one to eight 128-site blocks, none repeated, and batch sizes 2 to 4
FLEX_SHAPES = [(2, 200), (3, 256), (2, 300), (2, 64), (2, 130), (4, 500), (2, 77), (3, 640), (2, 10), (2, 1000),
               (2, 333)]


def _compiled_flex_over_shapes(shapes, *, device, max_graphs, grad=False):
    """Run compiled flex over ``shapes`` with dynamo's recompile limit set to raise; compare
    each output (and gradient) with the dense reference; return the graphs compiled."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    before = counters["stats"]["unique_graphs"]
    with torch._dynamo.config.patch(recompile_limit=max_graphs, fail_on_recompile_limit_hit=True):
        for i, (B, L) in enumerate(shapes):
            g = torch.Generator().manual_seed(i)
            q, k, v = (torch.randn(B, L, 2, 16, generator=g).to(device).requires_grad_(grad) for _ in range(3))
            valid = torch.ones(B, L, dtype=torch.bool, device=device)
            valid[0, L - L // 4 :] = False  # right padding
            with torch.set_grad_enabled(grad):
                out, _ = FlexPlan(valid, window=64, block_size=64, compiled=True)(q, k, v)
                ref, _ = plan_attention(valid, window=64, backend="dense")(q, k, v)
            torch.testing.assert_close(out[valid], ref[valid], rtol=0, atol=2e-3 if grad else 1e-5)
            if grad:
                w = torch.randn_like(out) * valid[:, :, None, None]
                for a, b in zip(torch.autograd.grad((out * w).sum(), (q, k, v)),
                                torch.autograd.grad((ref * w).sum(), (q, k, v))):
                    torch.testing.assert_close(a, b, rtol=0, atol=2e-3)
    return counters["stats"]["unique_graphs"] - before


@pytest.mark.slow
def test_compiled_flex_runs_many_lengths_without_recompiling():
    """A graph per batch size or length (the old `dynamic=False`) would raise here: after one
    static graph, a new batch size and a new length each make that dimension dynamic. Compiled
    flex runs on CPU (forward only). A batch of one (its own graph: dynamo specialises sizes 0
    and 1) is left to the GPU test: torch 2.13's C++ flex template fails to compile it."""
    assert _compiled_flex_over_shapes(FLEX_SHAPES, device="cpu", max_graphs=3) <= 3


@requires_cuda
def test_compiled_flex_on_cuda_many_lengths_forward_and_backward():
    shapes = FLEX_SHAPES + [(1, 64), (1, 1000)]
    assert _compiled_flex_over_shapes(shapes, device="cuda", max_graphs=4, grad=True) <= 4


@pytest.mark.parametrize("block_size", [32, 64, 128, 256])
def test_compiled_flex_blocks_are_tiles_every_gpu_kernel_accepts(block_size):
    """Inductor's flex kernels need their tiles to divide the BlockMask's block: a 64-site block
    fails in bf16 on H100 (BLOCK_M=128). Checked against torch's own tile tables."""
    valid = torch.ones(2, 300, dtype=torch.bool)
    plan = FlexPlan(valid, window=128, block_size=block_size, compiled=True)
    assert plan.sparse_block % FLEX_TILE == 0 and plan.sparse_block >= block_size
    assert plan.block_mask.BLOCK_SIZE == (plan.sparse_block, plan.sparse_block)
    heuristics = pytest.importorskip("torch._inductor.template_heuristics.triton")
    cuda = heuristics.CUDAConfigHeuristic()
    tiles = [(c.block_m, c.block_n) for table in (cuda.h100_default_flex_config, cuda.a100_default_flex_config)
             for c in table.values()]
    for capability in [(8, 0), (8, 6), (9, 0), (10, 0)]:
        with mock.patch("torch.cuda.get_device_capability", return_value=capability):
            for head_dim in (16, 32, 64, 128):
                for dtype in (torch.float32, torch.bfloat16):
                    tiles += [(c.block_m, c.block_n) for c in cuda.get_flex_attn_fwd_configs(head_dim, dtype)]
                    tiles += [(c.block_m1, c.block_n1) + (c.block_m2, c.block_n2)
                              for c in cuda.get_flex_attn_bwd_configs(head_dim, dtype)]
    assert tiles and all(plan.sparse_block % t == 0 for tile in tiles for t in tile)


def test_flex_on_cpu_refuses_backward_with_a_clear_message():
    q, k, v, valid, _ = _inputs(16, dtype=torch.float32)
    with pytest.raises(ConfigError, match="flex has no backward on CPU.*backend=local"):
        sliding_window_attention(q, k, v, valid, window=4, backend="flex", block_size=8)


@requires_cuda
@pytest.mark.parametrize("backend", ["flex", "flash"])
@pytest.mark.parametrize("L,bs,window", [(300, 128, 64), (256, 128, 256), (1000, 128, 128)])
def test_gpu_backends_match_dense(backend, L, bs, window):
    if backend == "flash" and not flash_available():
        pytest.skip("flash-attn not installed (pip install 'snpbag[gpu]')")
    dev = torch.device("cuda")
    q, k, v, valid, w = (x.detach().to(dev) for x in _inputs(L, dtype=torch.float32, H=4, D=32))
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    ref_out, ref_grads = _run("dense", q, k, v, valid, w, window=window, block_size=bs)
    out, grads = _run(backend, q, k, v, valid, w, window=window, block_size=bs)
    atol = 2e-2 if backend == "flash" else 2e-3  # flash runs in bf16
    torch.testing.assert_close(out, ref_out, rtol=0, atol=atol)
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg, rtol=0, atol=atol)


@pytest.mark.parametrize("backend", ["dense", "local", "flex"])
@pytest.mark.parametrize("L,bs,window", [(37, 8, 5), (10, 4, 100), (40, 8, 17)])
def test_weights_only_on_request_and_banded(backend, L, bs, window):
    q, k, v, valid, _ = _inputs(L, dtype=torch.float64)
    half = half_window(window, L)
    with torch.no_grad():
        plan = plan_attention(valid, window=window, backend=backend, block_size=bs)
        out_fast, none = plan(q, k, v)
        out, band = plan(q, k, v, need_weights=True)
        dense_out, _ = plan_attention(valid, window=window, backend="dense")(q, k, v)
    assert none is None
    assert band.shape == (3, 2, L, 2 * half + 1)
    m = valid[:, :, None, None]
    torch.testing.assert_close(out * m, out_fast * m, rtol=0, atol=1e-12)
    torch.testing.assert_close(out * m, dense_out * m, rtol=0, atol=1e-12)
    # each real query's weights sum to one and put nothing on padding or beyond the window
    dense_w = band_to_dense(band)  # (B, H, L, L)
    vq = valid[:, None, :, None].expand_as(dense_w)
    sums = dense_w.sum(-1)[valid[:, None, :].expand(-1, 2, -1)]
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-12)
    allowed = band_mask(valid, window=window).expand_as(dense_w)
    assert (dense_w[vq & ~allowed] == 0).all()
    # and they are the probabilities a direct softmax gives
    s = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(q.shape[-1])
    p = s.masked_fill(~allowed, float("-inf")).softmax(-1)
    torch.testing.assert_close(dense_w[vq], p[vq], rtol=0, atol=1e-12)


def test_band_layout_round_trips():
    x = torch.rand(2, 3, 9, 9)
    half = 2
    i = torch.arange(9)
    x = x * ((i[:, None] - i[None, :]).abs() <= half)
    band = dense_to_band(x, half)
    assert band.shape == (2, 3, 9, 5)
    torch.testing.assert_close(band_to_dense(band), x, rtol=0, atol=0)
    # entry d of row i is key i - half + d
    assert band[0, 0, 4, 0] == x[0, 0, 4, 2] and band[0, 0, 4, 4] == x[0, 0, 4, 6]


def test_padding_content_never_reaches_real_tokens():
    q, k, v, valid, _ = _inputs(29, dtype=torch.float64)
    pad = ~valid[:, :, None, None]
    k2, v2 = k.detach() + 100 * pad, v.detach() - 50 * pad
    for backend in ("dense", "local"):
        with torch.no_grad():
            a, _ = sliding_window_attention(q, k, v, valid, window=9, backend=backend, block_size=8)
            b, _ = sliding_window_attention(q, k2, v2, valid, window=9, backend=backend, block_size=8)
        assert torch.isfinite(a).all() and torch.isfinite(b).all()
        assert torch.equal(a * ~pad, b * ~pad)


def test_local_under_bf16_autocast():
    q, k, v, valid, _ = _inputs(70, dtype=torch.float32, H=2, D=8)
    ref, _ = sliding_window_attention(q, k, v, valid, window=16, backend="dense")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = sliding_window_attention(
            q.bfloat16(), k.bfloat16(), v.bfloat16(), valid, window=16, backend="local", block_size=16
        )
    assert out.dtype == torch.bfloat16
    m = valid[:, :, None, None]
    torch.testing.assert_close(out.float() * m, ref.detach() * m, rtol=0, atol=5e-2)


def test_backend_resolution_and_errors():
    assert resolve_backend("auto", "cpu") == "local"
    assert set(BACKENDS) == {"flash", "flex", "local", "dense"}
    with pytest.raises(ConfigError, match="model.backend=flash needs a CUDA device"):
        resolve_backend("flash", "cpu")
    assert half_window(128, 10_000) == 64 and half_window(128, 10) == 9 and half_window(1, 5) == 0
