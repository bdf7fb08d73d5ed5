"""Patch-embedding head: one small vector per patch of ``patch`` consecutive sites, and a
decoder that reconstructs every genotype of the patch from that vector alone.

Patches are a fixed grid of each model tile (site ``offset + i`` of a sequence lies in patch
``(offset + i) // patch``), so a training window, an evaluation window and ``snpbag embed``
put a site in the same patch; a window that starts or ends inside a patch gives a shorter,
padded and masked one (so does a tile's last patch).

Compression follows the SNPBag paper: a per-site MLP narrows the encoder width to
``vector_dim`` channels, then a learned weighting of the slots of a segment (one weight per slot
and channel, so a channel can specialise on part of the patch) sums them into one vector. The bottleneck has shape ``(n_vectors, vector_dim)``: the patch is cut into
``n_vectors`` consecutive segments of ``patch // n_vectors`` slots, each compressed to its own
vector (default 1 x 128; 16 x 8 keeps locality with as many numbers).

Decoding reads only the bottleneck and what the model knows without the sample: the site's
identity and its allele-frequency prior (the same Hardy-Weinberg log-prior as the genotype head),
so the AF baseline is what an uninformative embedding decodes to. ``decoder`` picks how the site's
identity enters:

- ``site``: a linear readout per model site. The bottleneck is projected to ``rank`` numbers
  (default: its own size) and each site reads them with its own 3 x rank matrix and 3 biases, as a
  linear code (PCA of the patch) is read back; it costs 3 x (rank + 1) numbers per model site.
- ``slot``: the same readout shared by every patch's slot i (the paper's decoder, one output row per
  position), 3 x (rank + 1) numbers per slot whatever the number of sites; the encoder and the
  compressor must then lay out every patch's code for one readout.
- ``mlp``: a shared MLP on the expanded vector joined with a per-site query of ``query_dim``
  numbers by a sum (``query_mix=add``) or an elementwise product (``multiply``).

The reconstruction loss is the cross-entropy over every called site of the patch, masked input or
not; with ``token_weight > 0`` a composed masked-genotype head adds the per-token loss on masked
sites.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from snpbag.config import ModelConfig
from snpbag.data.batch import Batch
from snpbag.data.tokens import IGNORE_INDEX, MISSING
from snpbag.errors import ConfigError
from snpbag.model.embedding import UNKNOWN_AF, check_site_af, hwe_log_prior
from snpbag.model.heads.base import Head
from snpbag.model.heads.genotype import N_GENOTYPES, MaskedGenotypeHead, site_readout
from snpbag.model.outputs import EncoderOutput, HeadOutput

DEFAULT_PATCH = 2048
DEFAULT_SHAPE = (1, 128)
QUERY_MIXES = ("add", "multiply")  # how the mlp decoder joins the patch vector and the site's query
DECODERS = ("mlp", "site", "slot")  # shared MLP with a site query; a linear readout per site; per patch slot


def patch_layout(offset: torch.Tensor, valid: torch.Tensor, patch: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Where each site of a batch goes in a (B, n_patches * patch) grid of patch slots.

    Returns ``(slot, first_patch, n_patches)``: slot (B, L) index into the flattened patches of its
    row, first_patch (B,) the tile's patch index of the row's first patch, n_patches the patches per
    row (the batch maximum; rows with fewer have all-padding patches at the end).
    """
    B, L = valid.shape
    local = offset[:, None] + torch.arange(L, device=valid.device)  # (B, L) index in the tile
    first = offset // patch  # (B,)
    slot = local - first[:, None] * patch  # (B, L)
    length = valid.sum(1)  # right-padded rows
    last = (offset + length.clamp_min(1) - 1) // patch - first  # (B,)
    return slot, first, int(last.max()) + 1 if B else 0


def to_patches(x: torch.Tensor, slot: torch.Tensor, valid: torch.Tensor, n_patches: int, patch: int, fill=0):
    """(B, L, ...) per site -> (B, n_patches, patch, ...) per patch slot; empty slots take ``fill``."""
    B = x.shape[0]
    out = x.new_full((B, n_patches * patch) + tuple(x.shape[2:]), fill)
    rows = torch.arange(B, device=x.device)[:, None].expand_as(slot)
    out[rows[valid], slot[valid]] = x[valid]
    return out.view((B, n_patches, patch) + tuple(x.shape[2:]))


def from_patches(t: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
    """(B, n_patches, patch, ...) -> (B, L, ...) read back at each site's slot (padding sites read slot garbage)."""
    B, n, T = t.shape[:3]
    flat = t.reshape((B, n * T) + tuple(t.shape[3:]))
    idx = slot.clamp(0, n * T - 1)
    if flat.dim() == 2:
        return flat.gather(1, idx)
    return flat.gather(1, idx[..., None].expand(-1, -1, *flat.shape[2:]))


class PatchEmbeddingHead(Head):
    """Encoder hidden states -> (n_vectors, vector_dim) per patch -> 3 logits per site."""

    name = "embed"
    level = "patch"

    def __init__(self, cfg: ModelConfig, *, patch: int = DEFAULT_PATCH, shape: list[int] | tuple[int, int] = DEFAULT_SHAPE,
                 hidden: int = 256, decoder: str = "mlp", rank: int | None = None, readout_scale: float = 1.0,
                 query_dim: int = 16, query_mix: str = "add", recon_weight: float = 1.0,
                 token_weight: float = 0.0) -> None:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ConfigError(f"embed head option shape={list(shape)}: give [n_vectors, vector_dim], both >= 1")
        if patch < 1 or patch % shape[0]:
            raise ConfigError(f"embed head option patch={patch}: must be >= 1 and a multiple of n_vectors={shape[0]} "
                              "(shape[0])")
        if hidden < 1 or query_dim < 1:
            raise ConfigError(f"embed head options hidden={hidden}, query_dim={query_dim}: must be >= 1")
        if decoder not in DECODERS:
            raise ConfigError(f"embed head option decoder={decoder!r}: choose one of {', '.join(DECODERS)}")
        if rank is not None and rank < 1:
            raise ConfigError(f"embed head option rank={rank}: must be >= 1 (or null: the bottleneck's size)")
        if readout_scale <= 0:
            raise ConfigError(f"embed head option readout_scale={readout_scale}: must be > 0")
        if query_mix not in QUERY_MIXES:
            raise ConfigError(f"embed head option query_mix={query_mix!r}: choose one of {', '.join(QUERY_MIXES)}")
        if recon_weight < 0 or token_weight < 0 or recon_weight + token_weight == 0:
            raise ConfigError(f"embed head options recon_weight={recon_weight}, token_weight={token_weight}: "
                              "must be >= 0 and not both 0")
        # decoder's default stays mlp: model directories saved before the option rebuild with it;
        # configs/task/embed.yaml declares the default of new runs
        super().__init__(cfg, patch=patch, shape=list(shape), hidden=hidden, decoder=decoder, rank=rank,
                         readout_scale=readout_scale, query_dim=query_dim, query_mix=query_mix,
                         recon_weight=recon_weight, token_weight=token_weight)
        self.patch, self.shape = patch, shape
        self.recon_weight, self.token_weight = recon_weight, token_weight
        self.query_mix, self.decoder = query_mix, decoder
        n_vec, dim = shape
        self.segment = patch // n_vec
        # compress: width -> dim per site, then segment slots -> 1 (the paper's two MLPs)
        self.narrow = nn.Sequential(nn.Linear(cfg.d_model, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.slot_weight = nn.Parameter(torch.full((self.segment, dim), 1.0 / self.segment))  # per slot and channel
        self.slot_bias = nn.Parameter(torch.zeros(n_vec, dim))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)  # embeddings on a common scale
        if decoder == "mlp":  # decode: bottleneck -> hidden, plus a per-site query, -> 3 logits (+ HWE prior)
            self.expand = nn.Linear(n_vec * dim, hidden)
            self.query = nn.Embedding(cfg.n_sites, query_dim)
            self.query_proj = nn.Linear(query_dim, hidden, bias=False)
            self.decode = nn.Sequential(nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.GELU(),
                                        nn.Linear(hidden, N_GENOTYPES))
            nn.init.normal_(self.query.weight, std=1.0)
            nn.init.zeros_(self.decode[-1].weight)  # untrained: the AF prior's prediction
            nn.init.zeros_(self.decode[-1].bias)
        else:  # bottleneck -> rank numbers, read by each site's (or patch slot's) own 3 x rank matrix + 3 biases
            self.rank = rank or n_vec * dim
            # stored at 1/readout_scale and multiplied back in forward: Adam's step is scale-free, so
            # a row visited once per pass over its site moves readout_scale times faster (as SITE_SCALE)
            self.readout_scale = float(readout_scale)
            self.readout_in = nn.Linear(n_vec * dim, self.rank)
            self.readout = nn.Embedding(cfg.n_sites if decoder == "site" else patch, N_GENOTYPES * (self.rank + 1))
            nn.init.zeros_(self.readout.weight)  # untrained: the AF prior's prediction
        self.register_buffer("site_af", torch.full((cfg.n_sites,), UNKNOWN_AF))
        self.token = MaskedGenotypeHead(cfg) if token_weight > 0 else None

    @torch.no_grad()
    def set_site_prior(self, af) -> None:
        af = check_site_af(af, self.site_af.numel())
        if not self.site_af.is_meta:
            self.site_af.copy_(af)
        if self.token is not None:
            self.token.set_site_prior(af)

    def embed(self, enc_out: EncoderOutput, batch: Batch) -> dict[str, torch.Tensor]:
        """The bottleneck of every patch a batch covers.

        Returns ``embedding`` (B, n_patches, n_vectors, vector_dim), ``first_patch`` (B,) the tile's
        patch index of column 0, ``n_sites`` (B, n_patches) sites of the patch in the batch (0: a
        padding patch), ``slot`` (B, L) each site's slot in the flattened patches.
        """
        valid = batch.valid
        slot, first, n_patches = patch_layout(batch.offset, valid, self.patch)
        z = self.narrow(enc_out.hidden)  # (B, L, dim)
        z = to_patches(z, slot, valid, n_patches, self.patch)  # (B, n, T, dim); empty slots 0
        present = to_patches(valid, slot, valid, n_patches, self.patch, fill=False)  # (B, n, T)
        B, n, T, dim = z.shape
        z = z.view(B, n, self.shape[0], self.segment, dim)  # (B, n, V, S, dim)
        w = self.slot_weight.to(z.dtype)  # (S, dim)
        pooled = (z * w).sum(3) + self.slot_bias.to(z.dtype)  # (B, n, V, dim)
        return {"embedding": self.norm(pooled), "first_patch": first, "n_sites": present.sum(-1), "slot": slot}

    def reconstruct(self, embedding: torch.Tensor, site_index: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        """(B, n_patches, V, dim) bottleneck, (B, L) sites and slots -> (B, L, 3) logits from the bottleneck alone."""
        B, n = embedding.shape[:2]
        if self.decoder == "mlp":
            u = self.expand(embedding.reshape(B, n, -1))  # (B, n, H)
            u = from_patches(u[:, :, None].expand(B, n, self.patch, -1), slot)  # (B, L, H)
            q = self.query_proj(self.query(site_index))  # (B, L, H)
            h = u * q if self.query_mix == "multiply" else u + q  # (B, L, H)
            logits = self.decode(h)  # (B, L, 3)
        else:
            u = self.readout_in(embedding.reshape(B, n, -1))  # (B, n, r)
            u = from_patches(u[:, :, None].expand(B, n, self.patch, -1), slot)  # (B, L, r)
            row = site_index if self.decoder == "site" else slot % self.patch
            logits = site_readout(self.readout, row, u, self.readout_scale)  # (B, L, 3)
        dtype = torch.promote_types(logits.dtype, torch.float32)
        return logits.to(dtype) + hwe_log_prior(self.site_af[site_index]).to(dtype)

    def forward(self, enc_out: EncoderOutput, batch: Batch) -> HeadOutput:
        e = self.embed(enc_out, batch)
        logits = self.reconstruct(e["embedding"], batch.site_index, e["slot"])  # (B, L, 3)
        extras = {k: e[k] for k in ("embedding", "first_patch", "n_sites")}
        if batch.truth is None:
            return HeadOutput(loss=None, logits=logits, extras=extras)
        target = batch.truth.masked_fill(~batch.valid | (batch.truth == MISSING), IGNORE_INDEX)  # (B, L)
        extras["target"] = target  # what the logits are scored against: every called genotype
        n = (target != IGNORE_INDEX).sum()
        total = F.cross_entropy(logits.float().reshape(-1, N_GENOTYPES), target.reshape(-1),
                                ignore_index=IGNORE_INDEX, reduction="sum")
        loss = self.recon_weight * total / n.clamp_min(1)
        if self.token is not None and batch.target is not None:
            tok = self.token(enc_out, batch)
            loss = loss + self.token_weight * tok.loss
            extras["token_loss"] = tok.loss.detach()
        extras["n_targets"] = n
        return HeadOutput(loss=loss, logits=logits, extras=extras)


def decoded_dosage(embedding: torch.Tensor, readout_in: tuple[torch.Tensor, torch.Tensor], readout: torch.Tensor,
                   site_af: torch.Tensor, patch_sites: list[int], scale: float) -> torch.Tensor:
    """Expected ALT dosage of every site of consecutive patches, decoded from their bottlenecks
    alone by a ``site``/``slot`` readout: what :meth:`PatchEmbeddingHead.reconstruct` gives
    (softmax, then P(het) + 2 P(hom alt)), a patch at a time so the readout rows are not
    repeated per sample.

    embedding (N, P, V * dim); readout_in the (weight (r, V * dim), bias (r,)) of the head's
    ``readout_in``; readout (L, 3 * (r + 1)) the table rows of the L sites, in patch order
    (stored at 1 / ``scale``, as the head's); site_af (L,) their AF prior; patch_sites the
    sites of each of the P patches (summing to L). Returns (N, L) float32.
    """
    u = F.linear(embedding.float(), readout_in[0].float(), readout_in[1].float())  # (N, P, r)
    r = u.shape[-1]
    w = readout.float().view(-1, N_GENOTYPES, r + 1) * scale  # (L, 3, r+1)
    prior = hwe_log_prior(site_af)  # (L, 3)
    dose = torch.arange(N_GENOTYPES, dtype=torch.float32)
    out, lo = [], 0
    for p, n in enumerate(patch_sites):
        wp = w[lo:lo + n]  # (n, 3, r+1)
        logits = torch.einsum("lgr,br->blg", wp[..., :-1], u[:, p]) + wp[..., -1] + prior[lo:lo + n]  # (N, n, 3)
        out.append(torch.softmax(logits, -1) @ dose)  # (N, n)
        lo += n
    return torch.cat(out, 1) if out else u.new_zeros(u.shape[0], 0)

