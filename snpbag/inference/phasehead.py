"""``snpbag phase --model DIR`` with a phasing model (task=phase): the copying model's
phasing, corrected by the encoder's phasing head.

Order of work, per batch of samples: the copying model has already phased every sample
against the model directory's haplotype panel (:mod:`snpbag.inference.phase`); its answer
becomes, per heterozygous site, P(ALT on the previous het's ALT haplotype)
(:func:`snpbag.retrieval.relphase.prior_from_phased`); the encoder reads the sample's
genotypes (missing calls as MASK, the panel's retrieval input as in training) in windows
of the training sequence length that overlap by a margin on each side, and the head
returns its P(same) for the hets of each window's core whose previous het lies in the same
window; every other het keeps the copying model's value. The chain of these decisions is
the phasing (:func:`snpbag.retrieval.relphase.decode`), and PP is the head's probability
of the printed relative phase. Typed genotypes are never changed (decode only reorders the
copying model's alleles, and the copying model only fills missing calls).

Difference from training, said plainly: in training the prior comes from the copying model
run on the training window alone; here from the whole chromosome, so it is somewhat more
accurate than the head was trained against.
"""

from __future__ import annotations

import numpy as np

from snpbag.config import MaskingConfig
from snpbag.data.tokens import IGNORE_INDEX, MASK
from snpbag.errors import InputError
from snpbag.retrieval import relphase
from snpbag.retrieval.phasing import Phased, dosages

SAMPLE_BATCH = 16  # samples through the encoder at once (memory, not output, depends on it)


def head_name(meta: dict) -> str:
    return (meta.get("head") or {}).get("name", "")


def windows(n: int, length: int, margin: int) -> list[tuple[int, int, int, int]]:
    """(w0, w1, c0, c1): windows [w0, w1) of at most ``length`` sites over n sites whose cores
    [c0, c1) tile 0..n, each core with up to ``margin`` sites of context either side."""
    core = max(1, length - 2 * margin)
    out = []
    for c0 in range(0, n, core):
        c1 = min(n, c0 + core)
        out.append((max(0, c0 - margin), min(n, c1 + margin), c0, c1))
    return out


def head_p_same(loaded, tokens: np.ndarray, sites: np.ndarray, prior: np.ndarray, exclude: list[int], *,
                length: int, margin: int) -> np.ndarray:
    """(n, L) P(same) of n samples over L sites of one tile: the head's where it scores a het
    (previous het in the same window), else ``prior``. tokens: (n, L) 0/1/2 or MASK."""
    import torch

    from snpbag.data.batch import Batch

    model, vocab, panel = loaded.model, loaded.vocab, loaded.retrieval_panel
    dev = loaded.device
    tile = int(np.searchsorted(vocab.tile_start, sites[0], side="right") - 1)
    out = prior.copy()
    n = tokens.shape[0]
    for w0, w1, c0, c1 in windows(sites.size, length, margin):
        site = sites[w0:w1]
        L = site.size
        tok = tokens[:, w0:w1]
        votes = panel.votes(tok, site, exclude=exclude)  # (n, L, 3)
        batch = Batch(
            genotype=torch.as_tensor(tok, dtype=torch.long, device=dev),
            site_index=torch.as_tensor(site, dtype=torch.long, device=dev).expand(n, L),
            position=torch.as_tensor(vocab.position[site], dtype=torch.long, device=dev).expand(n, L),
            valid=torch.ones(n, L, dtype=torch.bool, device=dev),
            target=torch.full((n, L), IGNORE_INDEX, dtype=torch.long, device=dev),
            tile=torch.full((n,), tile, dtype=torch.long, device=dev),
            sample=torch.arange(n, device=dev),
            offset=torch.full((n,), int(site[0] - vocab.tile_start[tile]), dtype=torch.long, device=dev),
            retrieval=torch.as_tensor(votes, device=dev),
            phase_prior=torch.as_tensor(prior[:, w0:w1], dtype=torch.float32, device=dev),
        )
        with torch.inference_mode():
            res = model(batch)
        p = torch.sigmoid(res.logits.float()).cpu().numpy()  # (n, L)
        scored = res.extras["scored"].cpu().numpy()
        core = slice(c0 - w0, c1 - w0)
        out[:, c0:c1] = np.where(scored[:, core], p[:, core], out[:, c0:c1])
    return out


def refine(loaded, res: Phased, g: np.ndarray, vocab_index: np.ndarray, bounds, *, samples: np.ndarray,
           exclude: np.ndarray, on_batch=None) -> Phased:
    """The copying model's phasing ``res`` (N, P, ...) of input calls ``g`` (N, P, 2) at model
    sites ``vocab_index`` (P,), re-decided by the head for ``samples`` (rows of res), each
    excluding panel genome ``exclude[k]`` (−1: none). Returns a new Phased."""
    data = (loaded.training or {}).get("data") or {}
    length = int(data.get("seq_len") or 512)
    margin = max(1, length // 8)
    vocab = loaded.vocab
    tile_of = np.searchsorted(vocab.tile_start, vocab_index, side="right") - 1
    hap, pp = res.haplotypes.copy(), res.pp.copy()
    d = dosages(g)
    for b0 in range(0, samples.size, SAMPLE_BATCH):
        rows = samples[b0:b0 + SAMPLE_BATCH]
        ex = exclude[b0:b0 + SAMPLE_BATCH].tolist()
        tokens = np.where(d[rows] < 0, MASK, d[rows]).astype(np.int64)  # (n, P)
        for a, b in bounds:
            prior = np.stack([relphase.prior_from_phased(res.haplotypes[i, a:b], res.pp[i, a:b]) for i in rows])
            p_same = prior.copy()
            cut = np.flatnonzero(np.diff(tile_of[a:b])) + 1  # a model sequence is one tile
            for t0, t1 in zip([0, *cut.tolist()], [*cut.tolist(), b - a]):
                p_same[:, t0:t1] = head_p_same(loaded, tokens[:, a + t0:a + t1], vocab_index[a + t0:a + t1],
                                               prior[:, t0:t1], ex, length=length, margin=margin)
            for k, i in enumerate(rows):
                hap[i, a:b], pp[i, a:b] = relphase.decode(res.haplotypes[i, a:b], p_same[k])
        if on_batch is not None:
            on_batch(rows.size)
    return Phased(hap, pp, res.filled.copy())


def check_phase_model(directory, meta: dict, *, copying_only: bool) -> bool:
    """True when ``--model`` names a phasing model whose head should be used; refuses a
    model of another head unless ``copying_only``."""
    name = head_name(meta)
    if name == "phase":
        return not copying_only
    if not copying_only:
        raise InputError(f"--model {directory}: a {name or 'headless'} model, not a phasing model; train one with "
                         "`snpbag train task=phase model.retrieval=haplotypes ...` and `snpbag export`, or add "
                         "--copying-only to phase with its haplotype panel alone")
    return False


def held_out_losses(loaded, store, *, seq_len: int | None = None, batch_size: int = 8, seed: int | None = None
                    ) -> dict[str, float]:
    """Mean binary cross-entropy of P(same) over the scored hets of the validation genomes of
    ``store`` (the training run's split: same store, seed and validation fraction), for the
    model, for the copying model's prior alone (what an untrained head with the prior
    predicts) and for P = 0.5; ``n`` the scored hets. Validation genomes are not in the panel,
    so they are held out from both the copying model and the head."""
    import torch
    import torch.nn.functional as F

    from snpbag.data.datamodule import GenotypeDataModule
    from snpbag.retrieval.kinds import options

    cfg = (loaded.training or {}).get("config") or {}
    data = cfg.get("data") or {}
    dm = GenotypeDataModule(store, batch_size=batch_size, seq_len=seq_len or int(data.get("seq_len") or 512),
                            masking=MaskingConfig(min_rate=0, max_rate=0),
                            seed=int(cfg.get("seed", 0) if seed is None else seed),
                            val_fraction=float(data.get("val_fraction", 0.1)), return_haplotypes=True,
                            phase_prior=True, retrieval=options(loaded.model.config))
    dm.setup("validate")
    tot, n = {"model": 0.0, "prior": 0.0}, 0
    for b in dm.val_dataloader():
        with torch.inference_mode():
            out = loaded.model(b.to(loaded.device))
        ok = out.extras["target"] >= 0
        y = out.extras["target"][ok].float()
        tot["model"] += F.binary_cross_entropy_with_logits(out.logits[ok].float(), y, reduction="sum").item()
        prior = b.phase_prior.to(loaded.device)[ok].clamp(1e-4, 1 - 1e-4)
        tot["prior"] += F.binary_cross_entropy(prior, y, reduction="sum").item()
        n += y.numel()
    return {k: v / max(n, 1) for k, v in tot.items()} | {"half": float(np.log(2)), "n": n}
