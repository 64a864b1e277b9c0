"""Few-step update rules for any process written as z = a x0 + s eps (core/process.py), from the
predictions (x0_hat, eps_hat) at the current level to the next, less noisy, level.

  first_order   z' = a' x0 + s' eps: DDIM with eta = 0 on DDPM, Euler on rectified flow (the flow path is
                straight, so Euler with v = eps - x0 lands exactly there), DPM-Solver++(1)
  dpmpp_2m      DPM-Solver++(2M) (Lu et al. 2022, multistep, data prediction), in lambda = log(a / s)
  heun          Heun's second-order correction of a flow Euler step (Karras et al. 2022, alg. 1)

Coefficients may be scalars (the step's level) or arrays broadcastable to the latents. The sampler
(core/sampling.py) holds given portions clean after every update, whatever these rules do to them.
"""

from __future__ import annotations

import jax.numpy as jnp

# process name -> the samplers it has. 'ddim' on flow is its Euler step (the same update).
SAMPLERS = {
    "ddpm": ("ddim", "ddpm", "dpm++2m"),
    "flow": ("euler", "heun", "dpm++2m", "ddim"),
}


def network_evaluations(sampler: str, num_steps: int) -> int:
  """Network calls per sample (a guided call is one batched call): Heun's last step is Euler's."""
  return 2 * num_steps - 1 if sampler == "heun" else num_steps


def first_order(x0, eps, a_next, s_next):
  return a_next * x0 + s_next * eps


def log_snr(a, s):
  """lambda = log(a / s): -inf at pure noise (a = 0), +inf when clean (s = 0)."""
  return jnp.log(a) - jnp.log(s)


def dpmpp_2m(z, x0, x0_prev, a, s, a_next, s_next, h, h_prev, second_order):
  """One DPM-Solver++(2M) step z_t -> z_next.

  With the corrected data prediction D = x0 + (x0 - x0_prev) h / (2 h_prev) the step is
  z' = (s'/s) z - a' (e^-h - 1) D  (h = lambda' - lambda), i.e. z' = a' D + (s'/s)(z - a D): the DDIM step
  with D for x0. `second_order` (traced bool) falls back to D = x0 on the first step (no history) and
  the last (lambda' = inf: diffusers' lower_order_final / final_sigmas_type 'zero').
  """
  ratio = jnp.where(second_order & jnp.isfinite(h_prev) & (h_prev > 0), h / (2.0 * h_prev), 0.0)
  d = x0 + ratio * (x0 - x0_prev)
  return a_next * d + (s_next / s) * (z - a * d)


def heun(z, velocity, velocity_next, dt):
  """z + dt (v(z, t) + v(z_euler, t')) / 2: the trapezoid over the Euler step's two ends."""
  return z + dt * 0.5 * (velocity + velocity_next)
