"""Inference commands on a model directory (impute; phase, embed, classify, relate as they land),
with the target-site matching they share. Training objectives are configs/task/, not these."""
