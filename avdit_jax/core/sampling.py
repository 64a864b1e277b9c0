"""One sampler for every task: a mask says which (modality, segment) portions are given.

Given portions are held at their clean values with t = 0 at every step; generated portions follow
the reverse process of either diffusion process (core/process.py) with one of its solvers
(core/solvers.py): DDPM, DDIM or DPM-Solver++(2M) for 'ddpm'; Euler, Heun or DPM-Solver++(2M) for
'flow'. MoNL guidance needs no null token: the 'unconditional' pass sets the dropped given portions to
the noisiest level (pure noise), and both passes run as one batched network call, with a weight per
modality (audio w_a, video w_v):

  out_m = out_cond_m + w_m * (out_cond_m - out_uncond_m)      (w = 0: plain conditional sampling)

Cross-modal guidance (`cross_guidance`, one weight or an (audio, video) pair c_m) works where nothing is
given too (joint generation): each modality is pushed away from its prediction with the other modality
at pure noise, which MoNL trains as that modality's marginal, so each follows the other more closely:

  out_m += c_m * (out_cond_m - out_without_other_m)         (one more pass per modality, in the same call)

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
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from avdit_jax.core import diffusion, monl, solvers
from avdit_jax.core.objective import DenoiseFn
from avdit_jax.core.process import Process

# network(params, audio [B, Ta, Ca], video [B, Tv, H, W, Cv], t [B, M, N]) -> (audio_out, video_out)
Network = Callable[[Any, jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]

SAMPLERS = tuple(dict.fromkeys(s for names in solvers.SAMPLERS.values() for s in names))
LOOPS = ("auto", "python", "fori")


def guidance_weights(guidance, field: str = "sampling.guidance") -> tuple[float, float]:
  """A guidance weight (one number, or an (audio, video) pair) -> (w_audio, w_video), checked."""
  if isinstance(guidance, (int, float, np.number)):
    weights = (float(guidance),) * monl.NUM_MODALITIES
  elif isinstance(guidance, Sequence) and len(guidance) == monl.NUM_MODALITIES:
    weights = tuple(float(w) for w in guidance)
  else:
    raise ValueError(f"{field}: expected a number or an (audio, video) pair, got {guidance!r}.")
  if min(weights) < 0:
    raise ValueError(f"{field} must be >= 0, got {guidance}.")
  return weights


@dataclasses.dataclass(frozen=True, eq=False)
class SamplerConfig:
  process: Process                    # diffusion.Schedule ('ddpm') or flow.RectifiedFlow ('flow')
  segments: monl.FrameSegments
  num_steps: int = 50
  sampler: str = "ddim"               # solvers.SAMPLERS[process.name]
  eta: float = 0.0                    # DDIM only: 0 deterministic, 1 DDPM-like
  ddpm_variance: str = "small"        # DDPM only: 'small' (posterior) or 'large' (beta)
  guidance: float | tuple = 0.0       # one weight, or (audio, video)
  cross_guidance: float | tuple = 0.0  # one weight, or (audio, video): away from the other modality at noise
  prediction: str = "epsilon"
  loop: str = "auto"
  spacing: str = "uniform"            # 'uniform' | 'shifted' (both processes) | 'karras' (ddpm)
  shift: float = 3.0                  # spacing 'shifted': s in s u / (1 + (s - 1) u); > 1 favours noise

  def __post_init__(self):
    valid = solvers.SAMPLERS[self.process.name]
    if self.sampler not in valid:
      raise ValueError(f"sampling.sampler: unknown {self.sampler!r} for process {self.process.name!r}; "
                       f"expected one of {valid}.")
    if self.process.name == "flow" and self.sampler == "ddim" and self.eta != 0:
      raise ValueError("sampling.eta: 'ddim' on the flow process is its deterministic Euler step; eta must be 0.")
    if self.loop not in LOOPS:
      raise ValueError(f"sampling.loop: unknown {self.loop!r}; expected one of {LOOPS}.")
    self.process.check_prediction(self.prediction)
    guidance_weights(self.guidance)
    guidance_weights(self.cross_guidance, "sampling.cross_guidance")
    self.process.sampling_levels(self.num_steps, self.spacing, self.shift)  # checks num_steps, spacing, shift

  @property
  def levels(self) -> np.ndarray:
    """The levels of the steps, noisiest first, ending at 0: [S + 1]."""
    return self.process.sampling_levels(self.num_steps, self.spacing, self.shift)

  @property
  def weights(self) -> tuple[float, float]:
    return guidance_weights(self.guidance)

  @property
  def guided(self) -> bool:
    return max(self.weights) > 0

  @property
  def cross_weights(self) -> tuple[float, float]:
    return guidance_weights(self.cross_guidance, "sampling.cross_guidance")

  @property
  def cross_guided(self) -> bool:
    return max(self.cross_weights) > 0

  @property
  def network_evaluations(self) -> int:
    return solvers.network_evaluations(self.sampler, self.num_steps)


class State(NamedTuple):
  audio: jax.Array   # [B, Ta, Ca]
  video: jax.Array   # [B, Tv, H, W, Cv]
  rng: jax.Array
  prev_audio: jax.Array | None = None   # multistep solvers: the previous step's x0_hat
  prev_video: jax.Array | None = None


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


def make_predict(network: Network, config: SamplerConfig):
  """predict(params, z_a, z_v, level, cond, key) -> ((x0_a, eps_a), (x0_v, eps_v)): one (guided: batched) network
  call with the generated portions at `level` and the given ones clean."""
  process, segs = config.process, config.segments
  w_a, w_v = config.weights
  pure = process.pure_noise

  c_a, c_v = config.cross_weights

  def predict(params, z_a, z_v, level, cond: Condition, key):
    batch = z_a.shape[0]
    t_grid = jnp.broadcast_to(monl.inference_timesteps(cond.mask, level), (batch, *cond.mask.shape))
    k_na, k_nv = jax.random.split(key)
    noise_a = process.add_noise(z_a, jax.random.normal(k_na, z_a.shape), pure)   # pure noise at the top level
    noise_v = process.add_noise(z_v, jax.random.normal(k_nv, z_v.shape), pure)
    # Every pass in one batched call: [conditional, unconditional?, without video?, without audio?].
    passes = [(z_a, z_v, t_grid)]
    if config.guided:
      # Unconditional: dropped given portions replaced by fresh noise at the noisiest level.
      t_unc = jnp.broadcast_to(monl.unconditional_timesteps(cond.mask, level, pure, cond.drop), t_grid.shape)
      drop_a, drop_v = monl.to_frames(cond.drop[None], segs)
      passes.append((jnp.where(drop_a, noise_a, z_a), jnp.where(drop_v, noise_v, z_v), t_unc))
    if config.cross_guided:
      passes.append((z_a, noise_v, t_grid.at[:, monl.VIDEO].set(pure)))   # audio's output: video unseen
      passes.append((noise_a, z_v, t_grid.at[:, monl.AUDIO].set(pure)))   # video's output: audio unseen
    out_a, out_v = network(params, *(jnp.concatenate(x) for x in zip(*passes)))
    chunks_a, chunks_v = jnp.split(out_a, len(passes)), jnp.split(out_v, len(passes))
    out_a, out_v = chunks_a[0], chunks_v[0]
    if config.guided:
      out_a, out_v = out_a + w_a * (out_a - chunks_a[1]), out_v + w_v * (out_v - chunks_v[1])
    if config.cross_guided:
      out_a = out_a + c_a * (chunks_a[0] - chunks_a[-2])
      out_v = out_v + c_v * (chunks_v[0] - chunks_v[-1])
    return (process.to_x0_and_eps(z_a, out_a.astype(z_a.dtype), level, config.prediction),
            process.to_x0_and_eps(z_v, out_v.astype(z_v.dtype), level, config.prediction))

  return predict


def make_step(network: Network, config: SamplerConfig):
  """The reverse step from levels[i] to levels[i + 1]: step(state, i, cond, params) -> state."""
  process, segs, sampler = config.process, config.segments, config.sampler
  levels = jnp.asarray(config.levels)                                             # [S + 1]
  coef_a, coef_s = process.coefficients(levels)                                   # [S + 1] each
  lam = solvers.log_snr(coef_a, coef_s)
  predict = make_predict(network, config)

  def step(state: State, i: jax.Array, cond: Condition, params) -> State:
    rng, k_step, k_uncond = jax.random.split(state.rng, 3)
    z_a, z_v = _hold_given(state.audio, state.video, cond, segs)
    level, level_next = levels[i], levels[i + 1]
    a, s, a_next, s_next = coef_a[i], coef_s[i], coef_a[i + 1], coef_s[i + 1]
    (x0_a, eps_a), (x0_v, eps_v) = predict(params, z_a, z_v, level, cond, k_uncond)
    prev_a, prev_v = state.prev_audio, state.prev_video
    if process.name == "ddpm" and sampler in ("ddim", "ddpm"):
      abar, abar_next = process.alpha_bar[level], process.alpha_bar[level_next]
      k_a, k_v = jax.random.split(k_step)
      def update(z, x0, eps, key):
        noise = jax.random.normal(key, z.shape, z.dtype)
        if sampler == "ddim":
          return diffusion.ddim_step(z, x0, eps, abar, abar_next, config.eta, noise)
        return diffusion.ddpm_step(z, x0, abar, abar_next, noise, config.ddpm_variance)
      new_a, new_v = update(z_a, x0_a, eps_a, k_a), update(z_v, x0_v, eps_v, k_v)
    elif sampler in ("euler", "ddim"):                                            # flow
      new_a = solvers.first_order(x0_a, eps_a, a_next, s_next)
      new_v = solvers.first_order(x0_v, eps_v, a_next, s_next)
    elif sampler == "dpm++2m":
      h, h_prev = lam[i + 1] - lam[i], lam[i] - lam[jnp.maximum(i - 1, 0)]
      second = (i > 0) & (level_next > 0)
      new_a = solvers.dpmpp_2m(z_a, x0_a, prev_a, a, s, a_next, s_next, h, h_prev, second)
      new_v = solvers.dpmpp_2m(z_v, x0_v, prev_v, a, s, a_next, s_next, h, h_prev, second)
      prev_a, prev_v = x0_a, x0_v
    else:                                                                         # heun (flow)
      euler_a = solvers.first_order(x0_a, eps_a, a_next, s_next)
      euler_v = solvers.first_order(x0_v, eps_v, a_next, s_next)

      def correct(_):
        e_a, e_v = _hold_given(euler_a, euler_v, cond, segs)
        (x0n_a, epsn_a), (x0n_v, epsn_v) = predict(params, e_a, e_v, level_next, cond, k_step)
        dt = level_next - level
        return (solvers.heun(z_a, eps_a - x0_a, epsn_a - x0n_a, dt),
                solvers.heun(z_v, eps_v - x0_v, epsn_v - x0n_v, dt))
      # The last step (to t = 0) stays Euler's: v at t = 0 is not needed, and it saves a network call.
      new_a, new_v = jax.lax.cond(level_next > 0, correct, lambda _: (euler_a, euler_v), None)
    new_a, new_v = _hold_given(new_a, new_v, cond, segs)
    return State(new_a, new_v, rng, prev_a, prev_v)

  return step


def make_condition(config: SamplerConfig, mask, audio: jax.Array, video: jax.Array, drop=None) -> Condition:
  """Validates the task against the sampler's layout and builds the Condition, before any compilation.

  `mask` is a bool [M, N] (see monl.task_mask / monl.parse_mask); `audio`/`video` hold the clean
  latents of the given portions (other values are ignored). `drop` picks the given portions that the
  guidance's unconditional pass drops (default: all of them).
  """
  segs = config.segments
  mask = monl.validate_mask(mask, segs.num_segments, allow_nothing_given=not config.guided)
  if drop is None:
    drop = mask
  else:
    drop = monl.validate_mask(drop, segs.num_segments, what="guidance drop mask") & mask
    if config.guided and not drop.any():
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
    state = State(jax.random.normal(k_a, cond.audio.shape), jax.random.normal(k_v, cond.video.shape), k_init)
    if config.sampler == "dpm++2m":
      state = state._replace(prev_audio=jnp.zeros_like(state.audio), prev_video=jnp.zeros_like(state.video))
    return state

  def run(params, cond: Condition, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
    state = body(init(cond, rng), cond, params)
    return state.audio, state.video

  return run


def sample(network: Network, config: SamplerConfig, cond: Condition, rng: jax.Array,
           params=None) -> tuple[jax.Array, jax.Array]:
  """One-off sampling of the task in `cond` (from make_condition); see make_sampler to sample repeatedly."""
  return make_sampler(network, config)(params, cond, rng)
