"""Genotype token vocabulary shared by the data layer, the model and the heads (no torch)."""

HOM_REF, HET, HOM_ALT = 0, 1, 2
MISSING = 3  # genotype not called in the input
MASK = 4  # hidden from the model; a training target if the true genotype is known
N_TOKENS = 5
IGNORE_INDEX = -100  # target value for positions that carry no loss (unmasked or missing)
