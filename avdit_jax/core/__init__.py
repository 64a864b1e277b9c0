"""The MoNL core, pure math with no I/O: the timestep grid and tasks (monl), the diffusion processes
(diffusion), the training objective, the sampler for any task mask, and the exact Gaussian oracle.
Imports nothing else of avdit_jax."""
