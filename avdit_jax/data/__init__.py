"""Data: the clip grid, the synthetic set, tfds builders, the latent format and its normalisation, and the
grain input streams. Imports media only."""
