"""The report's images (matplotlib, Agg) and its self-contained index.html with a head view.

The page needs no network: images are PNG data URIs, the head view's data is inline JSON
and its script and styles are inline. The head view follows BERTViz's: tokens on the left
(queries) and right (keys), one colour per head, line opacity = attention weight; a layer
selector, head toggles, and hovering a token shows only its lines.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from snpbag.eval.plots import pca2
from snpbag.kinship.seq2king.tables import COLUMNS, Analysis, fmt

HEAD_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _file(layer: str, kind: str) -> str:
    return f"{kind}_{layer.replace('.', '-')}.png"


def _sorted_order(analysis: Analysis) -> np.ndarray:
    lab = analysis.eval_labels
    return np.lexsort((lab.population[0], lab.continent[0]))


def figures(analysis: Analysis, directory: Path) -> list[tuple[str, str]]:
    """Write the PNGs; [(file name, caption)] in page order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = _sorted_order(analysis)
    pops = analysis.eval_labels.population[0][order]
    conts = analysis.eval_labels.continent[0][order]
    ticks = [f"{c}/{p}" for c, p in zip(conts, pops)]
    out = []

    def heat(ax, m, title):
        ax.imshow(m, cmap="viridis", interpolation="nearest")
        ax.set_title(title, fontsize=8)
        step = max(1, len(ticks) // 20)
        ax.set_yticks(range(0, len(ticks), step), ticks[::step], fontsize=5)
        ax.set_xticks([])

    fig, ax = plt.subplots(figsize=(4.5, 4))
    heat(ax, analysis.eval_kinship[0][np.ix_(order, order)], "KING kinship (sorted by continent, population)")
    fig.tight_layout()
    fig.savefig(directory / "heatmap_kinship.png", dpi=110)
    plt.close(fig)
    out.append(("heatmap_kinship.png", "Kinship of one evaluation sentence"))
    for name in analysis.layers:
        A = analysis.eval_attention[name][0]  # (H, L, L)
        fig, axes = plt.subplots(1, analysis.n_heads, figsize=(4 * analysis.n_heads, 4), squeeze=False)
        for h in range(analysis.n_heads):
            heat(axes[0, h], A[h][np.ix_(order, order)], f"{name} head {h}")
        fig.tight_layout()
        fig.savefig(directory / _file(name, "heatmap"), dpi=110)
        plt.close(fig)
        out.append((_file(name, "heatmap"), f"Attention of {name}, same sentence and order"))
    pop_all = analysis.eval_labels.population.ravel()
    names = sorted(set(pop_all.tolist()))
    cmap = plt.get_cmap("tab20", max(len(names), 1))
    for name in dict.fromkeys(n.replace(".cross", ".self") for n in analysis.layers):
        xy = pca2(analysis.eval_states[name].reshape(-1, analysis.eval_states[name].shape[-1]))
        fig, ax = plt.subplots(figsize=(4.5, 4))
        for i, p in enumerate(names):
            sel = pop_all == p
            ax.scatter(xy[sel, 0], xy[sel, 1], s=4, color=cmap(i), label=p)
        ax.set_title(f"token states after {name.replace('.self', '')} (PCA)", fontsize=8)
        ax.legend(fontsize=6, markerscale=2, loc="best")
        fig.tight_layout()
        fig.savefig(directory / _file(name, "projection"), dpi=110)
        plt.close(fig)
        out.append((_file(name, "projection"), f"2-D projection of token representations after {name}, by population"))
    return out


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
tr.chosen td{background:#eef6ff}tr.baseline td{background:#f6f6f6}
figure{display:inline-block;margin:6px}figure img{max-width:420px}figcaption{font-size:12px}
#head-view svg text{font-size:10px;cursor:pointer}.head-swatch{display:inline-block;width:16px;height:16px;
margin:2px;border:2px solid #333;cursor:pointer}.head-swatch.off{opacity:.2}#js-errors{color:#b00}
"""

_SCRIPT = r"""
(function(){
  var errs=document.getElementById('js-errors');
  window.addEventListener('error',function(e){errs.textContent+=e.message+'\n';});
  var D=JSON.parse(document.getElementById('hv-data').textContent);
  var sel=document.getElementById('layer-select'), sw=document.getElementById('head-swatches');
  var svg=document.getElementById('hv-svg'), NS='http://www.w3.org/2000/svg';
  var nH=D.attention[0].length, on=[], focus=-1, rowH=14, W=520;
  D.layers.forEach(function(name,i){var o=document.createElement('option');o.value=i;o.textContent=name;sel.appendChild(o);});
  for(var h=0;h<nH;h++){on.push(true);var s=document.createElement('span');s.className='head-swatch';
    s.style.background=D.colours[h%D.colours.length];s.title='head '+h;s.dataset.head=h;
    s.addEventListener('click',function(){var k=+this.dataset.head;on[k]=!on[k];this.classList.toggle('off');draw();});
    sw.appendChild(s);}
  function el(t,a){var e=document.createElementNS(NS,t);for(var k in a)e.setAttribute(k,a[k]);return e;}
  function draw(){
    while(svg.firstChild)svg.removeChild(svg.firstChild);
    var n=D.tokens.length, L=+sel.value; svg.setAttribute('height',n*rowH+20);svg.setAttribute('width',W);
    for(var h=0;h<nH;h++){if(!on[h])continue;var A=D.attention[L][h];
      for(var i=0;i<n;i++){if(focus>=0&&i!==focus)continue;for(var j=0;j<n;j++){var w=A[i][j];if(w<0.01)continue;
        svg.appendChild(el('line',{x1:150,y1:i*rowH+10,x2:W-150,y2:j*rowH+10,stroke:D.colours[h%D.colours.length],
          'stroke-opacity':Math.min(1,w*(focus>=0?1:3)),'stroke-width':2,'class':'attn'}));}}}
    D.tokens.forEach(function(t,i){
      [[145,'end'],[W-145,'start']].forEach(function(p){var x=el('text',{x:p[0],y:i*rowH+14,'text-anchor':p[1],'class':'token'});
        x.textContent=t;x.addEventListener('mouseenter',function(){focus=i;draw();});
        x.addEventListener('mouseleave',function(){focus=-1;draw();});svg.appendChild(x);});});
  }
  sel.addEventListener('change',draw);draw();
  var st=document.getElementById('hv-status');
  st.textContent='rendered '+D.layers.length+' layers x '+nH+' heads, '+D.tokens.length+' individuals';
  st.dataset.layers=D.layers.length;st.dataset.heads=nH;
})();
"""


def _table(rows: list[dict]) -> str:
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    body = []
    for r in rows:
        cls = "baseline" if r["source"] == "baseline" else "chosen" if r["chosen"] else ""
        body.append(f'<tr class="{cls}">' + "".join(f"<td>{html.escape(fmt(r[c]))}</td>" for c in COLUMNS) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def page(analysis: Analysis, images: list[tuple[str, str]], directory: Path) -> Path:
    """Write index.html: summary, tables, images inline, head view."""
    info = analysis.info
    figs = "".join(
        f'<figure><img alt="{html.escape(cap)}" src="data:image/png;base64,'
        f'{base64.b64encode((directory / name).read_bytes()).decode()}"><figcaption>{html.escape(cap)}</figcaption></figure>'
        for name, cap in images)
    data = dict(analysis.head_view, colours=list(HEAD_COLOURS))
    blob = json.dumps(data).replace("</", "<\\/")
    compared = "; ".join(f"{c}: Pearson {v['pearson']}, Spearman {v['spearman']}, mean |difference| "
                         f"{v['mean_abs_difference']}" for c, v in info.get("kinship_compared", {}).items())
    facts = {"input": f"{info['kinship']} ({info['kinship_kind']}, column {info.get('kinship_column', 'KINSHIP')})",
             "other kinship column of the table": compared or "none", "token input": info["tokens"],
             "analysis individuals": f"{info['analysis_individuals']} ({info['new_individuals']} never seen by the model)",
             "sentences per split": f"{info['sentences_per_split']} of {info['sentence_len']} individuals",
             "permutations": info["permutations"],
             "held-out loss (constant prediction)": f"{info['held_out_loss']} ({info['held_out_constant_loss']})",
             "inverted (chosen on calibration)": ", ".join(info["inverted_layers"]) or "none"}
    dl = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in facts.items())
    doc = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>Seq2KING report</title>
<style>{_STYLE}</style></head><body>
<h1>Seq2KING report</h1><dl>{dl}</dl>
<p>Connectivity (a): % of eligible queries whose mean attention to same-group keys exceeds that to
other-group keys (self excluded), on evaluation sentences; orientation chosen on calibration sentences
(rows marked <i>chosen</i>). Baselines: softmax of kinship rows, PCA distances. See docs/seq2king.md.</p>
<h2>Connectivity</h2>{_table(analysis.rows)}
<h2>Head view</h2><div id="head-view"><label>Layer <select id="layer-select"></select></label>
<span id="head-swatches"></span> <span id="hv-status">not rendered</span><br>
<svg id="hv-svg" xmlns="http://www.w3.org/2000/svg"></svg></div><pre id="js-errors"></pre>
<h2>Images</h2>{figs}
<script id="hv-data" type="application/json">{blob}</script>
<script>{_SCRIPT}</script></body></html>
"""
    path = directory / "index.html"
    path.write_text(doc)
    return path
