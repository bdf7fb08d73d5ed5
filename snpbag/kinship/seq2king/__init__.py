"""Seq2KING: a transformer over the kinship matrix whose attention is tested for connectivity
to continents and populations (docs/seq2king.md).

Layers inside: ``inputs`` (files), ``sentences``, ``stats`` and ``baselines`` (numpy/scipy,
no torch), ``config``; ``model`` (torch, no file I/O), ``checkpoint`` (the model directory),
``train``, ``attention``; ``report``, ``tables`` and ``render`` (the report's files).
"""
