"""Tokenizers: continuous-latent autoencoders that turn clips into the latents AVDiT models.

video.py (MAGVIT-v2 style causal 3D CNN), audio.py (SoundStream style strided 1D CNN), spectral.py
(STFT losses and distances). Each module exposes an encoder/decoder pair with `encode`, `decode` and
`loss` so the training system (avdit_jax/train/trainees.py) can train it like any other model.
"""
