"""Sliding-window attention backends against a naive loop and an explicit dense band mask."""

import math
import warnings

import pytest
import torch

from conftest import requires_cuda
from snpbag.errors import ConfigError
from snpbag.model.attention import (
    BACKENDS,
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
    nb = -(-L // bs)
    Lp = nb * bs
    vpad = torch.nn.functional.pad(valid, (0, Lp - L), value=False)
    tiles = band_mask(vpad, window=plan.half * 2).view(3, nb, bs, nb, bs).permute(0, 1, 3, 2, 4)
    full, partial = plan.full_blocks, plan.partial_blocks
    assert not (full & partial).any()
    assert tiles.flatten(-2).all(-1)[full].all()
    assert not (tiles.flatten(-2).any(-1) & ~(full | partial)).any()


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
