"""Flax (linen) modules: the AVDiT and the tokenizers, with their FLOP counts. Imports core only."""
