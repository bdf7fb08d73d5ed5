"""Reference-panel inputs to the encoder, behind one config (``model.retrieval``): genome votes
(:mod:`.genomes`) and Li-Stephens haplotype copying (:mod:`.haplotypes`); :mod:`.kinds` picks one."""
