"""Which retrieval panel a model reads, and where it lives: the one place that maps
``model.retrieval`` / ``model.retrieval_k`` to a panel class, its options and its file.

Two kinds give the encoder the same (L, 3) per-site input:

* ``genomes`` (:class:`~snpbag.retrieval.genomes.NeighbourPanel`): genotype votes of the
  ``retrieval_k`` training genomes nearest within ``retrieval_span`` sites. Unphased
  panels work; cheap; a mixture of the two haplotypes' ancestries.
* ``haplotypes`` (:class:`~snpbag.retrieval.haplotypes.HaplotypePanel`): genotype probabilities
  of a Li-Stephens copying model over ``retrieval_k`` panel haplotypes per block of
  ``retrieval_span`` visible sites. Needs a phased panel without missing calls (as
  Beagle's reference does); Beagle-level accuracy on its own (docs/benchmarks.md).

The panel holds the training genomes, so it is saved in the run directory and shipped in
the exported model directory (under the kind's file name).
"""

from __future__ import annotations

from pathlib import Path

from snpbag.retrieval import genomes, haplotypes
from snpbag.errors import CheckpointError, ConfigError

KINDS = {"genomes": genomes.NeighbourPanel, "haplotypes": haplotypes.HaplotypePanel}
FILES = {"genomes": genomes.FILE, "haplotypes": haplotypes.FILE}


def options(model_config) -> dict | None:
    """The datamodule's ``retrieval`` option for a model (None: no retrieval input)."""
    if not model_config.retrieval_k:
        return None
    out = {"kind": model_config.retrieval, "k": model_config.retrieval_k, "span": model_config.retrieval_span}
    if model_config.genetic_map:
        out["genetic_map"] = str(model_config.genetic_map)
    return out


def file_name(kind: str) -> str:
    if kind not in FILES:
        raise ConfigError(f"model.retrieval={kind!r}; choose one of {sorted(FILES)}")
    return FILES[kind]


def build(store, rows, opts: dict):
    """The panel of store rows ``rows`` (the training split) for ``opts`` (see :func:`options`)."""
    opts = dict(opts)
    kind = opts.pop("kind", "genomes")
    unknown = set(opts) - {"k", "span", "genetic_map"}
    if unknown:
        raise ConfigError(f"retrieval: unknown option(s) {sorted(unknown)}; give kind, k, span (and genetic_map)")
    file_name(kind)
    if kind == "haplotypes":
        return haplotypes.HaplotypePanel.from_store(store, rows, states=opts["k"], block=opts["span"],
                                                    margin=opts["span"], genetic_map=opts.get("genetic_map"))
    return genomes.NeighbourPanel.from_store(store, rows, k=opts["k"], span=opts["span"])


def load(model_dir: str | Path, model_config, n_sites: int):
    """The panel shipped in a model directory; CheckpointError if it is missing or does not
    cover the vocabulary."""
    kind = model_config.retrieval
    path = Path(model_dir) / file_name(kind)
    if not path.is_file():
        raise CheckpointError(f"{model_dir}: the model reads a {kind} retrieval panel but {path.name} is missing; "
                              "re-export it")
    panel = KINDS[kind].load(path)
    have = panel.by_site.shape[0]
    if have != n_sites:
        raise CheckpointError(f"{path}: {have} sites, the vocabulary {n_sites}; re-export the model directory")
    return panel
