"""Torch-facing data layer: the batch contract, masking, augmentation, dataset and datamodule.

Reads genotypes through :mod:`snpbag.store`; file formats live in :mod:`snpbag.io`.
"""
