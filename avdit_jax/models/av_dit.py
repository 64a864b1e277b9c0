"""AV-DiT (Wang et al., 2024, arXiv 2406.07686): one frozen image DiT shared by audio and video, light adapters.

  video [B, Tv, H, W, Cv] --per frame: DiT's x_embed + 2D sincos--> [B*Tv, S, D]
  audio [B, Ta, Ca]       --audio_embed + 1D sincos-->             [B, La, D]
  t     [B, M, N] --DiT's t_embed (+ y_embed's no-label row)--> c [B, M, N, D]: a frame's c is its video cell's,
                    an audio token's its audio cell's plus audio_cond
  depth x (frozen DiT block_i, shared:
           video: block_i per frame, then temporal_i (attention over frames, gate zero at init)
           audio: block_i, then audio_adapter_i (bottleneck, up-projection zero at init))
  shared_block: an adaLN-Zero Block over [audio; video] tokens (zero gates: identity at init)
  heads: DiT's `final` per frame (video), audio_head (audio) -> eps (or v) of each latent's shape

Backbone params keep the image DiT's names (x_embed, t_embed, y_embed, block_i, final), so a converted DiT file or
its params load by a partial config.init_from, and `ADAPTERS` (train/trainable.py's group 'adapters') selects
everything else. At init the video output is the image DiT's, frame by frame (tests/av_dit_test.py).
The audio branch's adaLN is per token (few next to the video's); the video's is per frame.
"""

from __future__ import annotations

from typing import Any

import einops
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from avdit_jax.core import monl
from avdit_jax.models import avdit, dit

# The trainable (non-DiT) params, as a regex over '/'-joined param paths.
ADAPTERS = r"^(audio_embed|audio_cond|audio_head|audio_adapter_\d+|temporal_\d+|shared_block)(/|$)"


class TemporalAttention(nn.Module):
  """Attention over frames at each spatial position, residual through a per-channel gate that starts at zero.
  hidden > 0 attends in that narrower width (a down and an up projection around it): fewer trainable params."""
  width: int
  num_heads: int
  hidden: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    # x: (B, T, S, D)
    b, t, s, d = x.shape
    h = nn.LayerNorm(1e-6, dtype=self.dtype, name="norm")(x)
    h = h + jnp.asarray(avdit.sincos(np.arange(t), d), h.dtype)[None, :, None]      # frame positions
    if self.hidden:
      h = nn.Dense(self.hidden, dtype=self.dtype, name="down")(h)                   # (B, T, S, r)
    h = einops.rearrange(h, "b t s r -> (b s) t r")                                 # (B*S, T, r)
    h = avdit.Attention(h.shape[-1], self.num_heads, dtype=self.dtype, name="attn")(h)
    h = einops.rearrange(h, "(b s) t r -> b t s r", b=b)
    if self.hidden:
      h = nn.Dense(d, dtype=self.dtype, name="up")(h)                               # (B, T, S, D)
    gate = self.param("gate", avdit.zeros_init, (d,), jnp.float32)
    return x + gate.astype(x.dtype) * h


class BottleneckAdapter(nn.Module):
  """x + up(gelu(down(LN(x)))), up zero at init (Houlsby et al., 2019)."""
  width: int
  hidden: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    # x: (B, L, D)
    h = nn.LayerNorm(1e-6, dtype=self.dtype, name="norm")(x)
    h = nn.gelu(nn.Dense(self.hidden, dtype=self.dtype, name="down")(h), approximate=True)   # (B, L, r)
    return x + nn.Dense(self.width, dtype=self.dtype, kernel_init=avdit.zeros_init, name="up")(h)


class AVAdaptedDiT(nn.Module):
  """AV-DiT with AVDiT's call: (audio [B, Ta, Ca], video [B, Tv, H, W, Cv], t int [B, M, N]) -> (audio, video) f32.

  Attributes (depth .. num_classes, freq_shift as models/dit.DiT's, so its params fit):
    patch: the DiT's spatial patch (video_patch is (1, patch, patch): frames stay whole).
    learn_sigma: the DiT's final layer predicts 2 * Cv channels (the published ones); the first Cv are kept.
    adapter_dim: hidden width of the audio adapters.
    temporal_dim: width the temporal attention runs in (0: the model's width).
  """
  num_segments: int
  depth: int = 12
  width: int = 384
  num_heads: int = 6
  mlp_ratio: float = 4.0
  patch: int = 2
  audio_patch: int = 1
  num_classes: int = 0
  freq_shift: float = 0.0
  learn_sigma: bool = False
  adapter_dim: int = 64
  temporal_dim: int = 0
  time_scale: float = 1.0     # t's factor before the DiT's embedder: 1 for DDPM, 1000 for flow's t in [0, 1]
  dtype: Any = jnp.float32

  @property
  def video_patch(self) -> tuple:
    return (1, self.patch, self.patch)

  @nn.compact
  def __call__(self, audio, video, t):
    b, (tv, h, w, cv), ca = audio.shape[0], video.shape[1:], audio.shape[-1]
    if t.shape != (b, monl.NUM_MODALITIES, self.num_segments) or video.shape[0] != b:
      raise ValueError(f"AV-DiT: audio {audio.shape}, video {video.shape}, t {t.shape}; expected t of shape "
                       f"({b}, {monl.NUM_MODALITIES}, {self.num_segments}).")
    if h != w:
      raise ValueError(f"AV-DiT: video frames {h}x{w}; the image DiT's 2D positions need square frames.")
    layout = avdit.layout_for(self, audio.shape[1:], video.shape[1:])
    d, p = self.width, self.patch
    gt, gh, gw = layout.video_grid
    la = layout.num_audio_tokens

    # ------------------------------------------------------------ tokens
    v = einops.rearrange(video, "b t (h p) (w q) c -> (b t) (h w) (p q c)", p=p, q=p)      # (B*Tv, S, p*p*Cv)
    v = nn.Dense(d, name="x_embed", dtype=self.dtype)(v)                                   # (B*Tv, S, D)
    v = v + jnp.asarray(dit.positional_encoding(gh, d), v.dtype)[None]
    a = einops.rearrange(audio, "b (t p) c -> b t (p c)", p=self.audio_patch)              # (B, La, pa*Ca)
    a = nn.Dense(d, name="audio_embed", dtype=self.dtype)(a)                               # (B, La, D)
    a = a + jnp.asarray(avdit.sincos(np.arange(la), d), a.dtype)[None]

    # ------------------------------------------------------------ conditioning: the DiT's, per cell
    t_scaled = t.astype(jnp.float32) * self.time_scale                                     # (B, M, N)
    c = dit.TimestepMLP(d, name="t_embed")(avdit.timestep_features(t_scaled, 256, freq_shift=self.freq_shift))
    if self.num_classes:
      c = c + nn.Embed(self.num_classes + 1, d, name="y_embed")(jnp.full((1, 1, 1), self.num_classes))
    audio_cond = self.param("audio_cond", avdit.zeros_init, (d,), jnp.float32)
    c = c.at[:, monl.AUDIO].add(audio_cond)
    cells = nn.silu(c).reshape(b, -1, d)                                                   # (B, M*N, D)
    frame_seg = monl.segment_ids(tv, 1, self.num_segments)                                 # (Tv,) numpy
    c_video = nn.silu(c[:, monl.VIDEO][:, frame_seg]).reshape(b * tv, 1, d)                # (B*Tv, 1, D)
    all_runs = avdit.cell_runs(layout.token_cells())
    audio_runs = avdit.cell_runs(layout.token_cells()[:la])
    c_audio = avdit.to_tokens(cells, audio_runs)                                           # (B, La, D)

    # ------------------------------------------------------------ frozen blocks, shared; trainable adapters
    for i in range(self.depth):
      block = avdit.Block(d, self.num_heads, self.mlp_ratio, dtype=self.dtype, name=f"block_{i}")
      v = block(v, c_video)                                                                # (B*Tv, S, D)
      v = TemporalAttention(d, self.num_heads, self.temporal_dim, self.dtype, name=f"temporal_{i}")(
          v.reshape(b, tv, gh * gw, d)).reshape(b * tv, gh * gw, d)
      a = BottleneckAdapter(d, self.adapter_dim, self.dtype, name=f"audio_adapter_{i}")(block(a, c_audio))

    # ------------------------------------------------------------ one shared block over both modalities
    x = jnp.concatenate([a, v.reshape(b, tv * gh * gw, d)], axis=1)                      # (B, La+Lv, D)
    x = avdit.Block(d, self.num_heads, self.mlp_ratio, runs=all_runs, dtype=self.dtype, name="shared_block")(
        x, cells)
    a, v = x[:, :la], x[:, la:].reshape(b * tv, gh * gw, d)

    # ------------------------------------------------------------ heads
    out_c = 2 * cv if self.learn_sigma else cv
    v = avdit.FinalLayer(d, p * p * out_c, name="final")(v, c_video)                  # (B*Tv, S, p*p*out)
    v = einops.rearrange(v, "(b t) (h w) (p q c) -> b t (h p) (w q) c", b=b, h=gh, p=p, q=p)[..., :cv]
    a = avdit.FinalLayer(d, self.audio_patch * ca, audio_runs, name="audio_head")(a, cells)
    a = einops.rearrange(a, "b t (p c) -> b (t p) c", p=self.audio_patch)
    return a.astype(jnp.float32), v.astype(jnp.float32)


def make_model(variant: str = "S/2", **overrides) -> AVAdaptedDiT:
  """AV-DiT over the DiT of that name ('S/2' ... 'XL/8', models/dit.VARIANTS) with field overrides."""
  return dit.from_variant(AVAdaptedDiT, variant, overrides, "model (kind 'av_dit')")


def flops_by_part(layout: avdit.TokenLayout, model: AVAdaptedDiT, batch: int) -> dict:
  """Analytic forward matmul FLOPs (2 per multiply-add) on one batch, by what a frozen-backbone step does with
  them (elementwise work left out):
    frozen_inner: frozen blocks on frames and on audio, the DiT's video head (their inputs still need gradients);
    frozen_input: the DiT's patch and timestep embedders (inputs are data: no backward at all);
    adapters: temporal attention, audio adapters, the shared block, audio head (gradients of inputs and weights);
    adapter_input: the audio embedding (a weight gradient only)."""
  d, depth, hidden = model.width, model.depth, int(model.width * model.mlp_ratio)
  (ta, ca), (tv, h, w, cv) = layout.audio_shape, layout.video_shape
  gt, gh, gw = layout.video_grid
  s, la = gh * gw, layout.num_audio_tokens
  dense = lambda tokens: 2 * tokens * (4 * d * d + 2 * d * hidden)            # qkv, out, mlp
  attend = lambda groups, length: groups * 2 * 2 * length * length * d
  frozen = dense(gt * s) + attend(gt, s) + 2 * gt * 6 * d * d                 # frames, one adaLN per frame
  frozen += dense(la) + attend(1, la) + 2 * la * 6 * d * d                    # audio, adaLN per token
  r = model.temporal_dim or d
  temporal = 2 * gt * s * (4 * r * r + (2 * d * r if model.temporal_dim else 0)) + attend(s, gt) * r // d
  adapter = 2 * la * 2 * d * model.adapter_dim
  cells = monl.NUM_MODALITIES * model.num_segments
  shared = dense(la + gt * s) + attend(1, la + gt * s) + 2 * cells * 6 * d * d
  video_out = 2 if model.learn_sigma else 1              # the head's channels
  t_embed = 2 * cells * (256 * d + d * d)
  parts = {"frozen_inner": depth * frozen + 2 * gt * 2 * d * d + 2 * tv * h * w * cv * video_out * d,
           "frozen_input": 2 * tv * h * w * cv * d + t_embed,
           "adapters": depth * (temporal + adapter) + shared + 2 * la * 2 * d * d + 2 * ta * ca * d,
           "adapter_input": 2 * ta * ca * d}
  return {k: float(batch * v) for k, v in parts.items()}


def count_flops(layout: avdit.TokenLayout, model: AVAdaptedDiT, batch: int) -> float:
  """Analytic forward matmul FLOPs on one batch (flops_by_part's sum)."""
  return sum(flops_by_part(layout, model, batch).values())


def count_train_flops(layout: avdit.TokenLayout, model: AVAdaptedDiT, batch: int, *, frozen_backbone: bool) -> float:
  """FLOPs of one train step: 3 x forward when everything trains; with the DiT frozen (train.trainable =
  'adapters') its weights get no gradient, so its matmuls cost a forward and, where an input needs one, an
  input gradient (2x), and the embedders' only the forward."""
  f = flops_by_part(layout, model, batch)
  if not frozen_backbone:
    return 3 * sum(f.values())
  return 2 * f["frozen_inner"] + f["frozen_input"] + 3 * f["adapters"] + 2 * f["adapter_input"]
