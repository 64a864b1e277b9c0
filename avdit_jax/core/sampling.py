"""One sampler for every task: a mask says which (modality, segment) portions are given.

Given portions are held at their clean values with t = 0 at every step; generated portions follow
the reverse process (DDPM or DDIM). MoNL guidance needs no null token: the 'unconditional' pass sets
the dropped given portions to t = T (pure noise), and both passes run as one batched network call:

  out = out_cond + w * (out_cond - out_uncond)      (w = 0: plain conditional sampling)

The network comes with its params as an argument of the compiled programs, `network(params, audio, video, t)`,
so sharded params are used where they live and new params (a later checkpoint, an evaluator's next call) run
the same programs without retracing; a network without params takes None (`without_params`).

The loop runs either as a Python loop over one compiled step ('python') or as `lax.fori_loop` inside
one jit ('fori': one program, the usual winner on TPU/GPU). On this CPU the two are within run-to-run
noise of each other (tools/benchmark.py; WORKSPACE.md); 'auto' picks 'python' on CPU and 'fori'
elsewhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from avdit_jax.core import diffusion, monl
from avdit_jax.core.objective import DenoiseFn

# network(params, audio [B, Ta, Ca], video [B, Tv, H, W, Cv], t [B, M, N]) -> (audio_out, video_out)
Network = Callable[[Any, jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]

SAMPLERS = ("ddim", "ddpm")
LOOPS = ("auto", "python", "fori")


@dataclasses.dataclass(frozen=True, eq=False)
class SamplerConfig:
  schedule: diffusion.Schedule
  segments: monl.FrameSegments
  num_steps: int = 50
  sampler: str = "ddim"
  eta: float = 0.0                    # DDIM only: 0 deterministic, 1 DDPM-like
  ddpm_variance: str = "small"        # DDPM only: 'small' (posterior) or 'large' (beta)
  guidance: float = 0.0
  prediction: str = "epsilon"
  loop: str = "auto"

  def __post_init__(self):
    if self.sampler not in SAMPLERS:
      raise ValueError(f"sampling.sampler: unknown {self.sampler!r}; expected one of {SAMPLERS}.")
    if self.loop not in LOOPS:
      raise ValueError(f"sampling.loop: unknown {self.loop!r}; expected one of {LOOPS}.")
    if self.prediction not in diffusion.PREDICTIONS:
      raise ValueError(f"diffusion.prediction: unknown {self.prediction!r}; expected one of "
                       f"{diffusion.PREDICTIONS}.")
    if self.guidance < 0:
      raise ValueError(f"sampling.guidance must be >= 0, got {self.guidance}.")
    diffusion.sampling_timesteps(self.schedule.num_timesteps, self.num_steps)  # checks num_steps


class State(NamedTuple):
  audio: jax.Array   # [B, Ta, Ca]
  video: jax.Array   # [B, Tv, H, W, Cv]
  rng: jax.Array


class Condition(NamedTuple):
  """What the task gives: clean latents (ignored where not given) and the per-frame masks."""
  audio: jax.Array        # [B, Ta, Ca]
  video: jax.Array        # [B, Tv, H, W, Cv]
  mask: jax.Array         # bool [M, N]: given portions
  drop: jax.Array         # bool [M, N]: given portions dropped in the unconditional pass


def _hold_given(state_a, state_v, cond: Condition, segments):
  given_a, given_v = monl.to_frames(cond.mask[None], segments)
  return jnp.where(given_a, cond.audio, state_a), jnp.where(given_v, cond.video, state_v)


def without_params(denoise: DenoiseFn) -> Network:
  """A denoise(audio, video, t) that needs no params (e.g. the Gaussian toy's exact one) as a Network."""
  return lambda params, audio, video, t: denoise(audio, video, t)


def make_step(network: Network, config: SamplerConfig):
  """The reverse step from steps[i] to steps[i + 1]: step(state, i, cond, params) -> state."""
  steps = jnp.asarray(diffusion.sampling_timesteps(config.schedule.num_timesteps, config.num_steps))
  abar_table = config.schedule.alpha_bar
  big_t = config.schedule.num_timesteps
  segs = config.segments
  guided = config.guidance > 0

  def step(state: State, i: jax.Array, cond: Condition, params) -> State:
    batch = state.audio.shape[0]
    t, t_prev = steps[i], steps[i + 1]
    rng, k_step, k_uncond = jax.random.split(state.rng, 3)
    z_a, z_v = _hold_given(state.audio, state.video, cond, segs)
    t_grid = jnp.broadcast_to(monl.inference_timesteps(cond.mask, t), (batch, *cond.mask.shape))
    if guided:
      # Unconditional half: dropped given portions replaced by fresh noise at level T.
      t_unc = jnp.broadcast_to(monl.unconditional_timesteps(cond.mask, t, big_t, cond.drop), t_grid.shape)
      drop_a, drop_v = monl.to_frames(cond.drop[None], segs)
      k_na, k_nv = jax.random.split(k_uncond)
      abar_big = abar_table[big_t]
      u_a = jnp.where(drop_a, diffusion.add_noise(z_a, jax.random.normal(k_na, z_a.shape), abar_big), z_a)
      u_v = jnp.where(drop_v, diffusion.add_noise(z_v, jax.random.normal(k_nv, z_v.shape), abar_big), z_v)
      out_a, out_v = network(params, jnp.concatenate([z_a, u_a]), jnp.concatenate([z_v, u_v]),
                             jnp.concatenate([t_grid, t_unc]))
      w = config.guidance
      guide = lambda o: o[:batch] + w * (o[:batch] - o[batch:])
      out_a, out_v = guide(out_a), guide(out_v)
    else:
      out_a, out_v = network(params, z_a, z_v, t_grid)
    abar_a, abar_v = monl.to_frames(abar_table[t_grid], segs)
    prev_grid = monl.inference_timesteps(cond.mask, t_prev)[None]
    abar_prev_a, abar_prev_v = monl.to_frames(abar_table[prev_grid], segs)
    k_a, k_v = jax.random.split(k_step)
    def update(z, out, abar, abar_prev, key):
      x0, eps = diffusion.to_x0_and_eps(z, out.astype(z.dtype), abar, config.prediction)
      noise = jax.random.normal(key, z.shape, z.dtype)
      if config.sampler == "ddim":
        return diffusion.ddim_step(z, x0, eps, abar, abar_prev, config.eta, noise)
      return diffusion.ddpm_step(z, x0, abar, abar_prev, noise, config.ddpm_variance)
    new_a = update(z_a, out_a, abar_a, abar_prev_a, k_a)
    new_v = update(z_v, out_v, abar_v, abar_prev_v, k_v)
    new_a, new_v = _hold_given(new_a, new_v, cond, segs)
    return State(new_a, new_v, rng)

  return step


def make_condition(config: SamplerConfig, mask, audio: jax.Array, video: jax.Array, drop=None) -> Condition:
  """Validates the task against the sampler's layout and builds the Condition, before any compilation.

  `mask` is a bool [M, N] (see monl.task_mask / monl.parse_mask); `audio`/`video` hold the clean
  latents of the given portions (other values are ignored). `drop` picks the given portions that the
  guidance's unconditional pass drops (default: all of them).
  """
  segs = config.segments
  mask = monl.validate_mask(mask, segs.num_segments, allow_nothing_given=config.guidance == 0.0)
  if drop is None:
    drop = mask
  else:
    drop = monl.validate_mask(drop, segs.num_segments, what="guidance drop mask") & mask
    if config.guidance > 0 and not drop.any():
      raise ValueError("guidance drop mask selects none of the given portions; nothing to guide with.")
  if audio.ndim != 3 or video.ndim != 5 or audio.shape[0] != video.shape[0]:
    raise ValueError(f"expected audio [B, Ta, Ca] and video [B, Tv, H, W, Cv] with one batch size, "
                     f"got {audio.shape} and {video.shape}.")
  if audio.shape[1] != len(segs.audio) or video.shape[1] != len(segs.video):
    raise ValueError(f"latent lengths (audio {audio.shape[1]}, video {video.shape[1]}) do not match the "
                     f"sampler's ({len(segs.audio)}, {len(segs.video)}).")
  return Condition(jnp.asarray(audio, jnp.float32), jnp.asarray(video, jnp.float32),
                   jnp.asarray(mask), jnp.asarray(drop))


def default_loop() -> str:
  return "python" if jax.default_backend() == "cpu" else "fori"


def make_sampler(network: Network, config: SamplerConfig):
  """run(params, cond, rng) -> (audio, video) latents, f32, given portions equal to their clean values.

  Compiles once per input shape and sharding: the task mask and the params are arguments, so every task and
  every params tree of one shape share one program.
  """
  step = make_step(network, config)
  loop = default_loop() if config.loop == "auto" else config.loop
  if loop == "fori":
    body = jax.jit(lambda s, c, p: jax.lax.fori_loop(0, config.num_steps, lambda i, x: step(x, i, c, p), s))
  else:
    body_step = jax.jit(step, donate_argnums=0)
    def body(state, cond, params):
      for i in range(config.num_steps):
        state = body_step(state, np.int32(i), cond, params)
      return state

  @jax.jit
  def init(cond: Condition, rng: jax.Array) -> State:   # jitted: the state lives where cond and rng do
    k_init, k_a, k_v = jax.random.split(rng, 3)
    return State(jax.random.normal(k_a, cond.audio.shape), jax.random.normal(k_v, cond.video.shape), k_init)

  def run(params, cond: Condition, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
    state = body(init(cond, rng), cond, params)
    return state.audio, state.video

  return run


def sample(network: Network, config: SamplerConfig, cond: Condition, rng: jax.Array,
           params=None) -> tuple[jax.Array, jax.Array]:
  """One-off sampling of the task in `cond` (from make_condition); see make_sampler to sample repeatedly."""
  return make_sampler(network, config)(params, cond, rng)
