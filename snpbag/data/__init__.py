"""Data layer: VCF reading, the Zarr genotype store, site vocabulary, loaders.

Only dataset.py, datamodule.py and batch.py import torch.
"""
