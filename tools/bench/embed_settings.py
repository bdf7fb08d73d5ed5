"""One table from several ``bench_embed.py --reuse`` runs: the held-out reconstruction accuracy of
each embedding-head setting on the same simulation and pretrained encoder, so the settings compare
like for like.

    python tools/bench/embed_settings.py /tmp/emb/base.json /tmp/emb/mul.json ... --json settings.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import _results


def row(record: dict) -> dict:
    info = record.get("info", {})
    recon = {r["sites"]: r for r in record["results"]["reconstruction"]}
    overrides = info.get("overrides") or ""
    val_masked = "data.val_mask_rate=0.0" not in overrides and info.get("mask", "0.0,0.5") != "0.0,0.0"
    setting = " ".join(x for x in overrides.split() if not x.startswith("data.val_mask_rate")) or "defaults"
    return {"setting": setting.replace("task.head.options.", ""), "shape": info.get("shape"),
            "train_mask": info.get("mask", "0.0,0.5"), "validation": "masked as in training" if val_masked else "nothing masked",
            "steps": info.get("embed_steps"), "lr": info.get("lr", 3e-3), "all": recon["all"]["embedding"],
            "maf_20_50": recon["MAF 0.2-0.5"]["embedding"],
            "het": recon["true het"]["embedding"] if "true het" in recon else None,
            "af_baseline": recon["all"]["af_baseline"],
            "commit": record.get("commit"), "load": (record.get("machine") or {}).get("load_1min")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="results of tools/bench/bench_embed.py")
    _results.add_json_option(p)
    a = p.parse_args()
    rows = [row(json.loads(f.read_text())) for f in a.files]
    for r in rows:
        print(" | ".join(str(v) for v in r.values()))
    _results.write(a.json, command="embed_settings", results={"settings": rows})


if __name__ == "__main__":
    main()
