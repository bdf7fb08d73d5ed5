"""Which retrieval panel a model reads: the one place that maps ``model.retrieval`` /
``model.retrieval_k`` to a panel class and its options.

Two kinds give the encoder the same (L, 3) per-site input:

* ``genomes`` (:class:`~snpbag.retrieval.genomes.NeighbourPanel`): genotype votes of the
  ``retrieval_k`` training genomes nearest within ``retrieval_span`` sites. Unphased
  panels work; cheap; a mixture of the two haplotypes' ancestries.
* ``haplotypes`` (:class:`~snpbag.retrieval.haplotypes.HaplotypePanel`): genotype probabilities
  of a Li-Stephens copying model over ``retrieval_k`` panel haplotypes per block of
  ``retrieval_span`` visible sites. Needs a phased panel without missing calls (as
  Beagle's reference does); Beagle-level accuracy on its own (docs/benchmarks.md).

``none`` (or ``retrieval_k`` 0) is the panel-free model: no retrieval input, and nothing of
the training genomes but the weights and the site allele frequencies in its directory.

The panel holds the training genomes, so it is saved in the run directory and shipped in
the exported model directory (under the kind's file name, snpbag.modeldir.PANEL_FILES).
"""

from __future__ import annotations

from snpbag.retrieval import genomes, haplotypes
from snpbag.errors import ConfigError

KINDS = {"genomes": genomes.NeighbourPanel, "haplotypes": haplotypes.HaplotypePanel}


def options(model_config) -> dict | None:
    """The datamodule's ``retrieval`` option for a model (None: no retrieval input)."""
    if not model_config.uses_panel:  # model.retrieval=none or retrieval_k=0
        return None
    out = {"kind": model_config.retrieval, "k": model_config.retrieval_k, "span": model_config.retrieval_span}
    if model_config.genetic_map:
        out["genetic_map"] = str(model_config.genetic_map)
    return out


def build(store, rows, opts: dict):
    """The panel of store rows ``rows`` (the training split) for ``opts`` (see :func:`options`)."""
    opts = dict(opts)
    kind = opts.pop("kind", "genomes")
    unknown = set(opts) - {"k", "span", "genetic_map"}
    if unknown:
        raise ConfigError(f"retrieval: unknown option(s) {sorted(unknown)}; give kind, k, span (and genetic_map)")
    if kind not in KINDS:
        raise ConfigError(f"model.retrieval={kind!r}; choose one of {sorted(KINDS)}")
    if kind == "haplotypes":
        return haplotypes.HaplotypePanel.from_store(store, rows, states=opts["k"], block=opts["span"],
                                                    margin=opts["span"], genetic_map=opts.get("genetic_map"))
    return genomes.NeighbourPanel.from_store(store, rows, k=opts["k"], span=opts["span"])

