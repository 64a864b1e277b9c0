"""avdit_jax: AVDiT with Mixture of Noise Levels (MoNL) for audio-video latent diffusion."""
