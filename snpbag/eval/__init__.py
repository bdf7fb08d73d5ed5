"""Evaluation: metrics shared by training logs, benchmarks and the demo."""

#: Minor-allele-frequency bin edges used in every table (1–2, 2–5, 5–10, 10–20, 20–50 %).
MAF_BINS = (0.01, 0.02, 0.05, 0.10, 0.20, 0.50)
