"""Reports people look at: PNG figures (matplotlib, Agg) on one self-contained HTML page.

As imputation servers give their users: a page that opens from disk with no network, its
images embedded as PNG data URIs, its styles inline, and a ``js-errors`` block that the
page's one script fills if anything on the page throws (a headless browser test reads it).
The figures here take plain arrays, so any command (``snpbag impute --report``, a future
``snpbag phase --report``) draws the same plots of the same metrics (:mod:`snpbag.eval.metrics`).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snpbag.eval import MAF_BINS
from snpbag.eval.metrics import maf_bin_index, maf_bin_labels

__all__ = ["Page", "af_figure", "bar_figure", "by_maf_figure", "calibration_figure", "series_figure"]

#: Marker colour and label of each site class on the allele-frequency plot, in drawing order.
SITE_CLASSES = {"matched": ("#1f77b4", "matched"), "swapped": ("#2ca02c", "allele-swapped"),
                "flipped": ("#ff7f0e", "strand-flipped"), "excluded": ("#d62728", "excluded")}

_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:bold}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
figure{display:inline-block;margin:.5em;vertical-align:top}figcaption{font-size:.85em;max-width:520px}
img{max-width:520px}#js-errors{color:#b00}"""

_SCRIPT = """(function(){var e=document.getElementById('js-errors');
window.addEventListener('error',function(x){e.textContent+=x.message+'\\n';});
var n=document.images.length,ok=0;for(var i=0;i<n;i++){if(document.images[i].naturalWidth>0)ok++;}
var s=document.getElementById('status');s.dataset.images=n;s.dataset.loaded=ok;
s.textContent=ok+' of '+n+' figures rendered';})();"""


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def af_figure(path: Path, input_af, reference_af, kind, *, reference: str = "panel") -> Path:
    """Input ALT frequency (y) against the reference's (x), one colour per site class
    (``kind``: a key of :data:`SITE_CLASSES` per site); the diagonal is perfect agreement."""
    plt = _plt()
    x, y, kind = np.asarray(reference_af, float), np.asarray(input_af, float), np.asarray(kind)
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], color="#888", lw=0.8)
    for k, (colour, label) in SITE_CLASSES.items():
        m = kind == k
        if m.any():
            ax.scatter(x[m], y[m], s=6 if k == "matched" else 14, c=colour, marker="x" if k == "excluded" else "o",
                       alpha=0.5 if k == "matched" else 0.9, label=f"{label} ({int(m.sum()):,})", linewidths=0.8)
    ax.set(xlabel=f"ALT frequency, {reference}", ylabel="ALT frequency, input", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def bar_figure(path: Path, counts: Mapping[str, float], *, xlabel: str, title: str = "") -> Path:
    """Horizontal bars, one per key (e.g. input sites excluded per reason), labelled with the value."""
    plt = _plt()
    keys = list(counts)
    fig, ax = plt.subplots(figsize=(4.8, 0.45 * max(len(keys), 2) + 1.0))
    vals = [counts[k] for k in keys]
    ax.barh(range(len(keys)), vals, color="#d62728")
    ax.set_yticks(range(len(keys)), keys, fontsize=8)
    ax.invert_yaxis()
    for i, v in enumerate(vals):
        ax.text(v, i, f" {v:,}", va="center", fontsize=8)
    ax.set(xlabel=xlabel, title=title)
    ax.set_xlim(0, max(vals + [1]) * 1.25)
    return _save(fig, path)


def by_maf_figure(path: Path, maf, values: Mapping[str, np.ndarray], *, ylabel: str, bins=MAF_BINS) -> Path:
    """Box plots of per-site values (e.g. R2 of imputed sites, ER2 of typed sites) per MAF
    bin (:data:`snpbag.eval.MAF_BINS`), one box per series side by side; n per bin below."""
    plt = _plt()
    idx = maf_bin_index(maf, bins)
    labels = maf_bin_labels(bins)
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    width = 0.8 / max(len(values), 1)
    for j, (name, v) in enumerate(values.items()):
        v = np.asarray(v, float)
        data = [v[(idx == i) & np.isfinite(v)] for i in range(len(labels))]
        pos = np.arange(len(labels)) + (j - (len(values) - 1) / 2) * width
        keep = [i for i, d in enumerate(data) if d.size]
        if keep:
            ax.boxplot([data[i] for i in keep], positions=pos[keep], widths=width * 0.9, showfliers=False,
                       patch_artist=True, boxprops=dict(facecolor=f"C{j}", alpha=0.5), medianprops=dict(color="k"))
        ax.plot([], [], color=f"C{j}", lw=6, alpha=0.5, label=name)
    counts = ["\n".join(f"{int(((idx == i) & np.isfinite(np.asarray(v, float))).sum()):,}" for v in values.values())
              for i in range(len(labels))]
    ax.set_xticks(range(len(labels)), [f"{lab}\nn={c}" for lab, c in zip(labels, counts)], fontsize=7)
    ax.set(xlabel="MAF bin", ylabel=ylabel, ylim=(-0.02, 1.02))
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def calibration_figure(path: Path, tables: Mapping[str, Sequence[dict]], *, title: str = "") -> Path:
    """Mean true r² (y) against mean estimated R2 (x) per decile of estimated R2, one line
    per tool (rows of :func:`~snpbag.eval.metrics.r2_calibration`); the band is ±0.05."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.fill_between([0, 1], [-0.05, 0.95], [0.05, 1.05], color="#ddd", label="±0.05")
    ax.plot([0, 1], [0, 1], color="#888", lw=0.8)
    for j, (name, rows) in enumerate(tables.items()):
        rows = [r for r in rows if r["n_sites"]]
        ax.plot([r["mean_estimated"] for r in rows], [r["mean_true"] for r in rows], "o-", color=f"C{j}", label=name,
                ms=4)
    ax.set(xlabel="mean estimated R2 (per decile)", ylabel="mean true dosage r²", xlim=(0, 1), ylim=(0, 1.02),
           title=title)
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def series_figure(path: Path, labels: Sequence[str], series: Mapping[str, Sequence[float]], *, xlabel: str,
                  ylabel: str, title: str = "") -> Path:
    """One line per series over categories ``labels`` (e.g. r² per MAF bin, one line per tool)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for j, (name, values) in enumerate(series.items()):
        ax.plot(range(len(labels)), [np.nan if v is None else v for v in values], "o-", color=f"C{j}", label=name,
                ms=4)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=7)
    return _save(fig, path)


@dataclass
class Page:
    """One self-contained HTML report: a title, facts (a definition list), then sections of
    text, tables and figures, written with :meth:`write`."""

    title: str
    facts: dict[str, str] = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def table(self, columns: Sequence[str], rows: Sequence[Sequence]) -> None:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in r) + "</tr>" for r in rows)
        self.parts.append(f"<table><tr>{head}</tr>{body}</table>")

    def figure(self, png: Path, caption: str) -> None:
        data = base64.b64encode(Path(png).read_bytes()).decode()
        cap = html.escape(caption)
        self.parts.append(f'<figure><img alt="{cap}" src="data:image/png;base64,{data}"><figcaption>{cap}'
                          "</figcaption></figure>")

    def write(self, path: Path) -> Path:
        dl = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in self.facts.items())
        doc = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
               f"<style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1><dl>{dl}</dl>"
               f'{"".join(self.parts)}<p id="status">not rendered</p><pre id="js-errors"></pre>'
               f"<script>{_SCRIPT}</script></body></html>\n")
        Path(path).write_text(doc)
        return Path(path)


def _cell(v) -> str:
    if isinstance(v, float):
        return "–" if not np.isfinite(v) else f"{v:.4g}"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    return str(v)
