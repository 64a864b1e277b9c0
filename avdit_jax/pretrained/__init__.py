"""Public weights into this project's modules: safe file reading, converters (DiT, the SD VAE)."""
