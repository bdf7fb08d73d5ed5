"""Bidirectional sliding-window attention with interchangeable backends.

Semantics (identical for every backend, and what the tests check):

* ``window`` is the TOTAL span. With ``half = window // 2``, query ``i`` attends to key ``j``
  iff ``|i - j| <= half`` and key ``j`` is a real token (``valid[b, j]``). Distances are in
  token indices within the sequence, not base pairs. An even window therefore spans
  ``window + 1`` keys (e.g. 128 -> 64 left, itself, 64 right).
* Padded keys are never attended by a real query, so a real token's output does not depend on
  anything written in the padding.
* A padded query attends to itself only. Its output is meaningless and every consumer ignores
  it; the self-edge only keeps the softmax finite so no NaN can leak into a gradient.

Backends (``resolve_backend``):

* ``flash``: flash-attn's varlen kernel with ``window_size=(half, half)``; needs CUDA, the
  optional ``flash-attn`` package and right padding (the Batch contract).
* ``flex``: ``torch.nn.attention.flex_attention`` with a BlockMask built directly from block
  indices (O((L/block)^2) integers, never an L x L mask); compiled on CUDA, with dynamic shapes
  and sparse blocks of a multiple of 128 (``FlexPlan``). On CPU torch has no flex backward and
  the eager forward materialises L x L scores, so it is test-only there.
* ``local``: plain torch. The sequence is cut into blocks; each query block attends to the
  ``block + 2*half`` keys around it through ``scaled_dot_product_attention`` with a 4-D boolean
  band mask. Time and memory are linear in length; this is the CPU path.
* ``dense``: an explicit (L, L) band mask. The reference for tests and short sequences only.

Tensors come in and go out as (B, L, H, Dh), the layout a fused QKV projection produces.
Attention weights are returned only on request, in the banded layout (B, H, L, 2*half+1) where
entry ``[b, h, i, d]`` is the weight of key ``j = i - half + d``; ``band_to_dense`` expands it.
"""

from __future__ import annotations

import functools
import importlib.util
import math

import torch
import torch.nn.functional as F

from snpbag.errors import ConfigError

BACKENDS = ("flash", "flex", "local", "dense")


def flash_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def resolve_backend(name: str, device: torch.device | str) -> str:
    """Map ``auto`` to a concrete backend for ``device``; check an explicit choice is usable on
    it (the name itself was validated by snpbag.config.ModelConfig)."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    if name == "auto":
        if cuda and flash_available():
            return "flash"
        return "flex" if cuda else "local"
    assert name in BACKENDS, name
    if name == "flash" and not (cuda and flash_available()):
        raise ConfigError(
            "model.backend=flash needs a CUDA device and `pip install flash-attn` "
            "(extra snpbag[gpu]); use model.backend=auto"
        )
    return name


def half_window(window: int, length: int) -> int:
    """Keys reach ``window // 2`` positions each side; more than ``length - 1`` changes nothing."""
    assert window >= 1, window  # validated by snpbag.config.ModelConfig
    return min(window // 2, max(length - 1, 0))


# --- banded weights ----------------------------------------------------------------------


def _band_index(length: int, half: int, device: torch.device) -> torch.Tensor:
    # (L, 2h+1): column of key j = i - h + d in a key axis left-padded by h
    return torch.arange(length, device=device)[:, None] + torch.arange(2 * half + 1, device=device)[None, :]


def dense_to_band(weights: torch.Tensor, half: int) -> torch.Tensor:
    """(..., L, L) -> (..., L, 2*half+1); keys outside the sequence get weight 0."""
    L = weights.shape[-1]
    padded = F.pad(weights, (half, half))  # (..., L, L+2h)
    idx = _band_index(L, half, weights.device).expand(*weights.shape[:-1], 2 * half + 1)
    return padded.gather(-1, idx)


def band_to_dense(band: torch.Tensor) -> torch.Tensor:
    """(..., L, 2*half+1) -> (..., L, L). For short sequences only: it is quadratic."""
    L, width = band.shape[-2], band.shape[-1]
    half = (width - 1) // 2
    padded = band.new_zeros(*band.shape[:-1], L + 2 * half)
    idx = _band_index(L, half, band.device).expand(*band.shape)
    padded.scatter_(-1, idx, band)
    return padded[..., half : half + L]


def band_mask(valid: torch.Tensor, *, window: int) -> torch.Tensor:
    """The reference (B, 1, L, L) boolean mask: True where query i may attend key j."""
    L = valid.shape[1]
    half = half_window(window, L)
    i = torch.arange(L, device=valid.device)
    band = (i[:, None] - i[None, :]).abs() <= half  # (L, L)
    eye = i[:, None] == i[None, :]
    return band[None, None] & (valid[:, None, None, :] | eye[None, None])


def _masked_softmax(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # q (N, H, Lq, D), k (N, H, Lk, D), mask broadcastable to (N, H, Lq, Lk)
    scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32)).masked_fill(~mask, float("-inf"))
    return scores.softmax(-1).to(q.dtype)


# --- plans: everything about the mask that is shared by all layers of one forward ---------


class AttentionPlan:
    """Built once per forward from the padding mask, then called by every layer."""

    backend: str = ""

    def __init__(self, valid: torch.Tensor, *, window: int, block_size: int) -> None:
        if valid.dim() != 2 or valid.dtype != torch.bool:
            raise ValueError(f"valid must be a (B, L) bool tensor, got {tuple(valid.shape)} {valid.dtype}")
        self.valid = valid
        self.window = window
        self.block_size = block_size
        self.B, self.L = valid.shape
        self.half = half_window(window, self.L)
        self._fallback: AttentionPlan | None = None

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """q, k, v: (B, L, H, Dh) -> output (B, L, H, Dh), banded weights or None."""
        if need_weights:
            # fast kernels never expose probabilities; recompute on the local path
            if self._fallback is None:
                self._fallback = LocalPlan(self.valid, window=self.window, block_size=self.block_size)
            return self._fallback(q, k, v, need_weights=True)
        return self.attend(q, k, v), None

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class DensePlan(AttentionPlan):
    backend = "dense"

    def __init__(self, valid: torch.Tensor, *, window: int, block_size: int) -> None:
        super().__init__(valid, window=window, block_size=block_size)
        self.mask = band_mask(valid, window=window)  # (B, 1, L, L)

    def __call__(self, q, k, v, *, need_weights=False):
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # (B, H, L, Dh)
        if need_weights:
            w = _masked_softmax(q, k, self.mask)  # (B, H, L, L)
            return (w @ v).transpose(1, 2), dense_to_band(w, self.half)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)
        return out.transpose(1, 2), None


class LocalPlan(AttentionPlan):
    """Block-local attention: query block b sees keys [b*bs - h, b*bs + bs - 1 + h]."""

    backend = "local"

    def __init__(self, valid: torch.Tensor, *, window: int, block_size: int) -> None:
        super().__init__(valid, window=window, block_size=block_size)
        B, L, h = self.B, self.L, self.half
        self.bs = bs = max(1, min(block_size, L))
        self.nb = nb = -(-L // bs)
        self.Lp = nb * bs
        self.W = W = bs + 2 * h  # keys seen by one query block
        kvalid = F.pad(valid, (h, self.Lp - L + h), value=False).unfold(1, W, bs)  # (B, nb, W)
        rel = torch.arange(W, device=valid.device)[None, :] - torch.arange(bs, device=valid.device)[:, None]
        band = (rel >= 0) & (rel <= 2 * h)  # (bs, W): |i - j| <= h
        self_edge = rel == h  # (bs, W): j == i
        mask = band & (kvalid[:, :, None, :] | self_edge)  # (B, nb, bs, W)
        # 4-D (N, 1, bs, W): a 2-D/3-D mask sends SDPA down a much slower CPU path
        self.mask = mask.reshape(B * nb, 1, bs, W)

    def _query_blocks(self, x: torch.Tensor) -> torch.Tensor:
        B, L, H, D = x.shape
        x = F.pad(x, (0, 0, 0, 0, 0, self.Lp - L))  # (B, Lp, H, D)
        return x.view(B, self.nb, self.bs, H, D).permute(0, 1, 3, 2, 4).reshape(B * self.nb, H, self.bs, D)

    def _key_windows(self, x: torch.Tensor) -> torch.Tensor:
        B, L, H, D = x.shape
        x = F.pad(x, (0, 0, 0, 0, self.half, self.Lp - L + self.half))  # (B, Lp+2h, H, D)
        x = x.unfold(1, self.W, self.bs)  # (B, nb, H, D, W)
        return x.permute(0, 1, 2, 4, 3).reshape(B * self.nb, H, self.W, D)

    def _unblock(self, x: torch.Tensor) -> torch.Tensor:
        # (B*nb, H, bs, E) -> (B, L, H, E)
        _, H, bs, E = x.shape
        x = x.view(self.B, self.nb, H, bs, E).permute(0, 1, 3, 2, 4).reshape(self.B, self.Lp, H, E)
        return x[:, : self.L]

    def __call__(self, q, k, v, *, need_weights=False):
        qb, kw, vw = self._query_blocks(q), self._key_windows(k), self._key_windows(v)
        if not need_weights:
            out = F.scaled_dot_product_attention(qb, kw, vw, attn_mask=self.mask)
            return self._unblock(out), None
        w = _masked_softmax(qb, kw, self.mask)  # (B*nb, H, bs, W)
        out = self._unblock(w @ vw)
        # key column c of block row r is j - i + h = c - r: the band is a diagonal gather
        idx = _band_index(self.bs, self.half, w.device).expand(*w.shape[:-1], 2 * self.half + 1)
        band = self._unblock(w.gather(-1, idx)).permute(0, 2, 1, 3)  # (B, H, L, 2h+1)
        return out, band


#: Sparse-block multiple for compiled flex: Inductor's Triton tiles (BLOCK_M, BLOCK_N, and the
#: backward's BLOCK_M1/N1/M2/N2, all <= 128 in torch's tables for every GPU generation) must
#: divide the BlockMask's block, so a 64-site block (tiny, small presets) fails on H100 in bf16.
FLEX_TILE = 128


@functools.cache
def compiled_flex_attention():
    """flex_attention compiled once per process with dynamic shapes.

    A static compile (``dynamic=False``) recompiles for every new batch size and padded length
    (chromosome-end tiles, validation, the last batch); past dynamo's recompile limit torch then
    runs flex eagerly, which materialises the L x L scores. ``dynamic=None`` compiles the first
    shape static (the fixed training tile length gets the fastest kernel) and a changed batch
    size or length recompiles once with that dimension dynamic: at most three graphs per grad
    mode, plus one for a batch of one (dynamo specialises sizes 0 and 1), within the default
    limit of eight."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=None)


def _dense_to_ordered(dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # (B, 1, nq, nk) bool -> counts (B, 1, nq) and indices with the chosen blocks first
    num = dense.sum(-1, dtype=torch.int32)
    idx = torch.argsort(dense.to(torch.int8), dim=-1, descending=True, stable=True).to(torch.int32)
    return num.contiguous(), idx.contiguous()


class FlexPlan(AttentionPlan):
    """flex_attention over a BlockMask built from block indices.

    ``compiled`` (default: on CUDA) runs the fused kernel; uncompiled flex is an eager dense
    reference (CPU tests). Compiled, the sparse block is rounded up to a multiple of FLEX_TILE
    and the padded length to at least two blocks, so a one-block sequence does not specialise
    the graph."""

    backend = "flex"

    def __init__(self, valid: torch.Tensor, *, window: int, block_size: int, compiled: bool | None = None) -> None:
        super().__init__(valid, window=window, block_size=block_size)
        from torch.nn.attention.flex_attention import BlockMask

        dev = valid.device
        self.compiled = dev.type == "cuda" if compiled is None else compiled
        self.sparse_block = bs = -(-block_size // FLEX_TILE) * FLEX_TILE if self.compiled else block_size
        # the band reach, not clamped to the length: a length-dependent constant in mask_mod
        # would be a guard, and so a recompile, per short length
        h = window // 2
        self.nb = nb = max(-(-self.L // bs), 2 if self.compiled else 1)
        self.Lp = nb * bs
        vpad = F.pad(valid, (0, self.Lp - self.L), value=False)  # (B, Lp)
        blk = torch.arange(nb, device=dev)
        gap = (blk[:, None] - blk[None, :]).abs()  # (nq, nk) block distance
        touches = torch.where(gap == 0, 0, (gap - 1) * bs + 1) <= h  # some pair within the band
        inside = (gap + 1) * bs - 1 <= h  # every pair within the band
        all_valid = vpad.view(self.B, nb, bs).all(-1)  # (B, nk)
        full = inside[None] & all_valid[:, None, :]  # (B, nq, nk)
        partial = touches[None] & ~full
        self.full_blocks, self.partial_blocks = full, partial  # (B, nq, nk), kept for tests
        kv_num, kv_idx = _dense_to_ordered(partial[:, None])
        full_num, full_idx = _dense_to_ordered(full[:, None])

        def mask_mod(b, hd, q_idx, kv_idx):
            return ((q_idx - kv_idx).abs() <= h) & (vpad[b, kv_idx] | (q_idx == kv_idx))

        self.block_mask = BlockMask.from_kv_blocks(
            kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=bs, mask_mod=mask_mod, seq_lengths=(self.Lp, self.Lp)
        )

    def attend(self, q, k, v):
        if q.device.type != "cuda" and torch.is_grad_enabled() and q.requires_grad:
            raise ConfigError("model.backend=flex has no backward on CPU in torch; use model.backend=local")
        pad = (0, 0, 0, 0, 0, self.Lp - self.L)
        q, k, v = (F.pad(x, pad).transpose(1, 2) for x in (q, k, v))  # (B, H, Lp, Dh)
        if self.compiled:
            out = compiled_flex_attention()(q, k, v, block_mask=self.block_mask)
        else:
            from torch.nn.attention.flex_attention import flex_attention

            out = flex_attention(q, k, v, block_mask=self.block_mask)
        return out.transpose(1, 2)[:, : self.L]


class FlashPlan(AttentionPlan):
    backend = "flash"

    def __init__(self, valid: torch.Tensor, *, window: int, block_size: int) -> None:
        super().__init__(valid, window=window, block_size=block_size)
        lengths = valid.sum(1, dtype=torch.int32)  # (B,)
        prefix = torch.arange(self.L, device=valid.device)[None, :] < lengths[:, None]
        if not bool((prefix == valid).all()):  # one sync per forward, not per layer
            raise ValueError("flash attention needs right-padded batches (valid must be a prefix)")
        self.indices = valid.reshape(-1).nonzero().squeeze(1)  # (T,)
        self.cu_seqlens = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))  # (B+1,)
        self.max_len = int(lengths.max()) if self.B else 0

    def attend(self, q, k, v):
        from flash_attn import flash_attn_varlen_func

        B, L, H, D = q.shape
        if D % 8 or D > 256:
            raise ConfigError(f"flash attention needs head_dim (d_model/n_heads) a multiple of 8 and <= 256, got {D}")
        dtype = q.dtype
        half = dtype if dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
        q, k, v = (x.reshape(B * L, H, D).index_select(0, self.indices).to(half) for x in (q, k, v))
        out = flash_attn_varlen_func(
            q, k, v, self.cu_seqlens, self.cu_seqlens, self.max_len, self.max_len,
            dropout_p=0.0, causal=False, window_size=(self.half, self.half),
        )  # (T, H, D)
        full = out.new_zeros(B * L, H, D).index_copy(0, self.indices, out)
        return full.view(B, L, H, D).to(dtype)


_PLANS = {"dense": DensePlan, "local": LocalPlan, "flex": FlexPlan, "flash": FlashPlan}


def plan_attention(
    valid: torch.Tensor, *, window: int, backend: str = "auto", block_size: int = 128
) -> AttentionPlan:
    """Build the per-forward attention plan for a (B, L) padding mask.

    ``backend`` is one of ``auto``, ``flash``, ``flex``, ``local``, ``dense``; ``auto`` picks
    flash on CUDA when installed, else flex on CUDA, else local.
    """
    assert block_size >= 1, block_size  # validated by snpbag.config.ModelConfig
    name = resolve_backend(backend, valid.device)
    return _PLANS[name](valid, window=window, block_size=block_size)


def sliding_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    valid: torch.Tensor,
    *,
    window: int,
    backend: str = "auto",
    block_size: int = 128,
    need_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One-shot form of ``plan_attention(valid, ...)(q, k, v)``; q, k, v are (B, L, H, Dh)."""
    plan = plan_attention(valid, window=window, backend=backend, block_size=block_size)
    return plan(q, k, v, need_weights=need_weights)
