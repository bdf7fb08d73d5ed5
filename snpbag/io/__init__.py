"""File formats only: VCF/BCF reading and writing, BGZF, genetic maps, chromosome names.

No store, no torch: everything above reads genotypes files through this layer.
"""
