"""Simulated data: msprime cohorts (:mod:`.cohort`) and pedigrees of known relatives (:mod:`.pedigree`)."""
