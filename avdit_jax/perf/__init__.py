"""Measuring speed (timing, matmul peak) and reading compiled HLO text. Imports nothing else of avdit_jax."""
