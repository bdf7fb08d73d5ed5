"""The VCF-Zarr genotype store: schema, reading (with shard scanning), conversion, site vocabulary."""
