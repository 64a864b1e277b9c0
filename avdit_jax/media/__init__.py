"""Media files in and out (PyAV, Pillow) and frames/sounds as arrays. Imports nothing else of avdit_jax."""
