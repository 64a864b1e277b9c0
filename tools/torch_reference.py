r"""The AVDiT train step written in PyTorch, as a side-by-side speed reference for tools/benchmark.py.

  pip install torch==2.13.0        # the CPU wheel (not a dependency of the package)
  python tools/torch_reference.py --variant=S --batch=8 --segments=4

The same network as avdit_jax/models/avdit.py at the benchmark's shapes (patch embeddings, sincos positions,
per-(modality, segment) adaLN-Zero gathered to the tokens, attention, tanh-GELU MLP, a final adaLN head
per modality), the same MoNL-style loss (a timestep per cell, each latent frame noised at its cell's
level, squared error on the noisy frames), and the same update (global-norm clipping, AdamW, EMA).
It is a timing reference only: nothing here is trained or compared number for number.

Prints one line for the benchmark to parse:
  TORCH <best step seconds> <torch matmul FLOP/s> <parameter count> <threads> <attention form>
where the attention form is the faster of the two PyTorch ways (scaled_dot_product_attention, or
explicit matmuls + softmax as in facebookresearch/DiT before PyTorch 2), timed in this run. Eager by
default, as facebookresearch/DiT trains; --compile runs the network through torch.compile.
"""

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

VARIANTS = {"tiny": (2, 64, 4), "mini": (4, 128, 4), "S": (12, 384, 6), "B": (12, 768, 12),
            "L": (24, 1024, 16), "XL": (28, 1152, 16)}   # the same table as avdit_jax.models.avdit.VARIANTS
AUDIO_SHAPE = (64, 8)          # as tools/benchmark.py
VIDEO_SHAPE = (4, 16, 16, 4)
VIDEO_PATCH = (1, 2, 2)


def sincos(positions, dim):
  half = dim // 2
  freqs = np.exp(-math.log(10000.0) * np.arange(half) / half)
  args = np.asarray(positions, np.float64)[..., None] * freqs
  return np.concatenate([np.cos(args), np.sin(args)], axis=-1).astype(np.float32)


class Block(nn.Module):
  def __init__(self, d, heads, attention):
    super().__init__()
    self.heads, self.attention = heads, attention
    self.adaln = nn.Linear(d, 6 * d)
    self.q, self.k, self.v, self.out = (nn.Linear(d, d) for _ in range(4))
    self.mlp_in, self.mlp_out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

  def forward(self, x, cond, cells):
    b, length, d = x.shape
    shift1, scale1, gate1, shift2, scale2, gate2 = self.adaln(cond)[:, cells].chunk(6, dim=-1)
    h = F.layer_norm(x, (d,), eps=1e-6) * (1 + scale1) + shift1
    q, k, v = (f(h).view(b, length, self.heads, -1).transpose(1, 2) for f in (self.q, self.k, self.v))
    if self.attention == "sdpa":
      a = F.scaled_dot_product_attention(q, k, v)
    else:
      a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v
    x = x + gate1 * self.out(a.transpose(1, 2).reshape(b, length, d))
    h = F.layer_norm(x, (d,), eps=1e-6) * (1 + scale2) + shift2
    return x + gate2 * self.mlp_out(F.gelu(self.mlp_in(h), approximate="tanh"))


class Head(nn.Module):
  def __init__(self, d, out_features):
    super().__init__()
    self.adaln, self.linear = nn.Linear(d, 2 * d), nn.Linear(d, out_features)

  def forward(self, x, cond, cells):
    shift, scale = self.adaln(cond)[:, cells].chunk(2, dim=-1)
    return self.linear(F.layer_norm(x, (x.shape[-1],), eps=1e-6) * (1 + scale) + shift)


class AVDiT(nn.Module):
  def __init__(self, variant, segments, attention):
    super().__init__()
    depth, d, heads = VARIANTS[variant]
    (ta, ca), (tv, h, w, cv) = AUDIO_SHAPE, VIDEO_SHAPE
    pt, ph, pw = VIDEO_PATCH
    self.segments, self.d = segments, d
    self.audio_embed, self.video_embed = nn.Linear(ca, d), nn.Linear(pt * ph * pw * cv, d)
    self.modality_embed = nn.Parameter(torch.randn(2, d) * 0.02)
    self.t_in, self.t_out = nn.Linear(256, d), nn.Linear(d, d)
    self.t_modality = nn.Parameter(torch.randn(2, d) * 0.02)
    self.blocks = nn.ModuleList(Block(d, heads, attention) for _ in range(depth))
    self.audio_head, self.video_head = Head(d, ca), Head(d, pt * ph * pw * cv)
    gt, gh, gw = tv // pt, h // ph, w // pw
    unit = max(ta, gt)
    video_pos = sincos((np.arange(gt) + 0.5) * unit / gt, d)[:, None, None] + np.concatenate([
        np.broadcast_to(sincos(np.arange(gh), d // 2)[:, None], (gh, gw, d // 2)),
        np.broadcast_to(sincos(np.arange(gw), d - d // 2)[None, :], (gh, gw, d - d // 2))], axis=-1)[None]
    pos = np.concatenate([sincos((np.arange(ta) + 0.5) * unit / ta, d), video_pos.reshape(-1, d)])
    self.register_buffer("pos", torch.from_numpy(pos))
    audio_cells = np.arange(ta) * segments // ta
    video_cells = segments + np.repeat(np.arange(gt) * segments // gt, gh * gw)
    self.register_buffer("cells", torch.from_numpy(np.concatenate([audio_cells, video_cells])))
    self.grid = (gt, gh, gw)
    half = 128
    self.register_buffer("freqs", torch.exp(-math.log(10000.0) * torch.arange(half) / half))

  def forward(self, audio, video, t):
    b, ta, ca = audio.shape
    (gt, gh, gw), (pt, ph, pw) = self.grid, VIDEO_PATCH
    v = video.reshape(b, gt, pt, gh, ph, gw, pw, -1).permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, gt * gh * gw, -1)
    x = torch.cat([self.audio_embed(audio) + self.modality_embed[0], self.video_embed(v) + self.modality_embed[1]], 1)
    x = x + self.pos
    args = t.float()[..., None] * self.freqs                                              # [B, M, N, 128]
    c = self.t_out(F.silu(self.t_in(torch.cat([args.cos(), args.sin()], -1))))
    cond = F.silu((c + self.t_modality[None, :, None]).reshape(b, -1, self.d))              # [B, M*N, D]
    for block in self.blocks:
      x = block(x, cond, self.cells)
    a_out = self.audio_head(x[:, :ta], cond, self.cells[:ta])
    v_out = self.video_head(x[:, ta:], cond, self.cells[ta:])
    v_out = v_out.reshape(b, gt, gh, gw, pt, ph, pw, -1).permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(video.shape)
    return a_out, v_out


def make_step(model, segments, batch, compile_model=False):
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0, foreach=True)
  ema = [p.detach().clone() for p in model.parameters()]
  alpha_bar = torch.cumprod(1 - torch.linspace(1e-4, 2e-2, 1000), 0)
  gen = torch.Generator().manual_seed(0)
  audio = torch.randn(batch, *AUDIO_SHAPE, generator=gen)
  video = torch.randn(batch, *VIDEO_SHAPE, generator=gen)
  ta, tv = AUDIO_SHAPE[0], VIDEO_SHAPE[0]
  net = torch.compile(model) if compile_model else model   # inductor: the network's forward and backward

  def step():
    t = torch.randint(0, 1000, (batch, 2, segments), generator=gen)                       # one t per cell
    abar = alpha_bar[t]
    abar_a = abar[:, 0].repeat_interleave(ta // segments, 1)[:, :, None]                   # per audio frame
    abar_v = abar[:, 1].repeat_interleave(tv // segments, 1)[:, :, None, None, None]       # per video frame
    eps_a, eps_v = torch.randn(audio.shape, generator=gen), torch.randn(video.shape, generator=gen)
    z_a = abar_a.sqrt() * audio + (1 - abar_a).sqrt() * eps_a
    z_v = abar_v.sqrt() * video + (1 - abar_v).sqrt() * eps_v
    out_a, out_v = net(z_a, z_v, t)
    noisy_a, noisy_v = (abar_a < 1).float(), (abar_v < 1).float()
    loss = (((out_a - eps_a) ** 2 * noisy_a).sum() + ((out_v - eps_v) ** 2 * noisy_v).sum()) / (
        noisy_a.expand_as(out_a).sum() + noisy_v.expand_as(out_v).sum())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
    opt.step()
    with torch.no_grad():
      torch._foreach_lerp_(ema, list(model.parameters()), 1 - 0.9999)
    return loss.item()

  return step


def best_time(fn, repeats):
  fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return min(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--variant", default="S", choices=sorted(VARIANTS))
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--segments", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--compile", action="store_true", help="torch.compile the network (inductor, C++ on CPU).")
  args = parser.parse_args()
  if AUDIO_SHAPE[0] % args.segments or VIDEO_SHAPE[0] % args.segments:
    parser.error(f"--segments={args.segments} must divide {AUDIO_SHAPE[0]} audio and {VIDEO_SHAPE[0]} video frames.")
  torch.manual_seed(0)
  n = 2048
  a = torch.randn(n, n)
  peak = 2 * n**3 / best_time(lambda: a @ a, max(args.repeats, 10))
  times = {}
  for attention in ("sdpa", "matmul"):
    model = AVDiT(args.variant, args.segments, attention)
    times[attention] = best_time(make_step(model, args.segments, args.batch, args.compile), args.repeats)
  form = min(times, key=times.get)
  params = sum(p.numel() for p in model.parameters())
  print(f"TORCH {times[form]} {peak} {params} {torch.get_num_threads()} {form}")


if __name__ == "__main__":
  main()
