"""DiT checkpoints (Peebles & Xie) into models/dit.DiT, from either published layout.

  original (facebookresearch/DiT, DiT-XL-2-256x256.pt)    diffusers (DiTTransformer2DModel, *.safetensors)
  x_embedder.proj                                          pos_embed.proj
  t_embedder.mlp.{0,2}                                     transformer_blocks.N.norm1.emb.timestep_embedder.linear_{1,2}
  y_embedder.embedding_table                               transformer_blocks.N.norm1.emb.class_embedder.embedding_table
  blocks.N.adaLN_modulation.1                              transformer_blocks.N.norm1.linear
  blocks.N.attn.qkv (q, k, v stacked)                      transformer_blocks.N.attn1.to_{q,k,v}
  blocks.N.attn.proj                                       transformer_blocks.N.attn1.to_out.0
  blocks.N.mlp.fc{1,2}                                     transformer_blocks.N.ff.net.{0.proj,2}
  final_layer.adaLN_modulation.1, final_layer.linear       proj_out_1, proj_out_2
  pos_embed (fixed; checked against ours)

diffusers keeps a copy of the timestep and label embedders in every block (its converter copies DiT's one
embedder into each); they must all be equal (they are in every converted checkpoint), else the file is refused.
PyTorch Linear weights are [out, in]; flax kernels [in, out], and the attention's are [D, H, Dh] / [H, Dh, D].
"""

from __future__ import annotations

import numpy as np

from avdit_jax.models import dit as dit_lib
from avdit_jax.pretrained import files

ORIGINAL, DIFFUSERS = "original", "diffusers"


def layout(state: dict) -> str:
  """Which published layout a DiT state dict is in."""
  if "x_embedder.proj.weight" in state:
    return ORIGINAL
  if "pos_embed.proj.weight" in state:
    return DIFFUSERS
  raise ValueError("not a DiT state dict: neither x_embedder.proj.weight (the original layout) nor "
                   f"pos_embed.proj.weight (diffusers') is there; its first keys: {sorted(state)[:5]}.")


class _Reader:
  """Takes tensors out of a state dict by name, so that whatever is left over can be refused."""

  def __init__(self, state: dict, where: str):
    self.state, self.where, self.used = state, where, set()

  def __call__(self, name: str) -> np.ndarray:
    if name not in self.state:
      raise ValueError(f"{self.where}: no {name} in the file.")
    self.used.add(name)
    return np.asarray(self.state[name], np.float32)

  def has(self, name: str) -> bool:
    return name in self.state

  def check_all_used(self, ignored=()):
    left = sorted(set(self.state) - self.used - set(ignored))
    if left:
      raise ValueError(f"{self.where}: {left[0]} (shape {tuple(np.shape(self.state[left[0]]))}) is not a weight of "
                       f"a DiT" + (f", nor are {len(left) - 1} more" if len(left) > 1 else "") + ".")


def _linear(out: dict, path: tuple, weight: np.ndarray, bias: np.ndarray) -> None:
  out[path + ("kernel",)], out[path + ("bias",)] = weight.T, bias


def _attention(out: dict, block: tuple, q, k, v, bias_q, bias_k, bias_v, proj_w, proj_b, heads: int) -> None:
  d = proj_w.shape[0]
  for name, w, b in (("query", q, bias_q), ("key", k, bias_k), ("value", v, bias_v)):
    out[block + ("attn", f"{name}_kernel")] = w.T.reshape(d, heads, -1)                 # [D, H, Dh]
    out[block + ("attn", f"{name}_bias")] = b.reshape(heads, -1)
  out[block + ("attn", "out_kernel")] = proj_w.T.reshape(heads, -1, d)                   # [H, Dh, D]
  out[block + ("attn", "out_bias")] = proj_b


def _patch_embed(out: dict, weight: np.ndarray, bias: np.ndarray) -> None:
  d = weight.shape[0]                                       # conv [D, C, p, p] -> dense over (p, q, c) patches
  out[("x_embed", "kernel")] = weight.transpose(2, 3, 1, 0).reshape(-1, d)
  out[("x_embed", "bias")] = bias


def _blocks(state: dict) -> int:
  prefix = "blocks." if "x_embedder.proj.weight" in state else "transformer_blocks."
  return len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})


def from_original(state: dict, model: dit_lib.DiT, where: str) -> dict:
  r = _Reader(state, where)
  out = {}
  _patch_embed(out, r("x_embedder.proj.weight"), r("x_embedder.proj.bias"))
  _linear(out, ("t_embed", "mlp_in"), r("t_embedder.mlp.0.weight"), r("t_embedder.mlp.0.bias"))
  _linear(out, ("t_embed", "mlp_out"), r("t_embedder.mlp.2.weight"), r("t_embedder.mlp.2.bias"))
  if r.has("y_embedder.embedding_table.weight"):
    out[("y_embed", "embedding")] = r("y_embedder.embedding_table.weight")
  for i in range(_blocks(state)):
    src, dst = f"blocks.{i}.", (f"block_{i}",)
    q, k, v = np.split(r(src + "attn.qkv.weight"), 3, axis=0)
    bq, bk, bv = np.split(r(src + "attn.qkv.bias"), 3)
    _attention(out, dst, q, k, v, bq, bk, bv, r(src + "attn.proj.weight"), r(src + "attn.proj.bias"), model.num_heads)
    _linear(out, dst + ("mlp_in",), r(src + "mlp.fc1.weight"), r(src + "mlp.fc1.bias"))
    _linear(out, dst + ("mlp_out",), r(src + "mlp.fc2.weight"), r(src + "mlp.fc2.bias"))
    _linear(out, dst + ("adaLN", "proj"), r(src + "adaLN_modulation.1.weight"), r(src + "adaLN_modulation.1.bias"))
  _linear(out, ("final", "adaLN", "proj"), r("final_layer.adaLN_modulation.1.weight"),
          r("final_layer.adaLN_modulation.1.bias"))
  _linear(out, ("final", "linear"), r("final_layer.linear.weight"), r("final_layer.linear.bias"))
  if r.has("pos_embed"):                  # a fixed buffer: it must be the code this model computes
    theirs = r("pos_embed").reshape(-1, model.width)
    ours = dit_lib.positional_encoding(model.input_size // model.patch, model.width)
    if theirs.shape != ours.shape or not np.allclose(theirs, ours, atol=1e-5):
      raise ValueError(f"{where}: pos_embed of shape {theirs.shape} is not DiT's 2D sincos code of shape "
                       f"{ours.shape} for input_size {model.input_size} and patch {model.patch}.")
  r.check_all_used()
  return out


def from_diffusers(state: dict, model: dit_lib.DiT, where: str) -> dict:
  r = _Reader(state, where)
  out = {}
  _patch_embed(out, r("pos_embed.proj.weight"), r("pos_embed.proj.bias"))
  depth = _blocks(state)
  emb = "transformer_blocks.{}.norm1.emb."
  shared = [n[len(emb.format(0)):] for n in state if n.startswith(emb.format(0))]
  for name in shared:                     # every block's copy of the embedders must be block 0's
    first = r(emb.format(0) + name)
    for i in range(1, depth):
      other = r(emb.format(i) + name)
      if other.shape != first.shape or not np.array_equal(other, first):
        raise ValueError(f"{where}: {emb.format(i) + name} differs from block 0's; a DiT shares one timestep and "
                         "label embedder across its blocks (as every converted checkpoint does).")
  t = emb.format(0) + "timestep_embedder."
  _linear(out, ("t_embed", "mlp_in"), r(t + "linear_1.weight"), r(t + "linear_1.bias"))
  _linear(out, ("t_embed", "mlp_out"), r(t + "linear_2.weight"), r(t + "linear_2.bias"))
  if r.has(emb.format(0) + "class_embedder.embedding_table.weight"):
    out[("y_embed", "embedding")] = r(emb.format(0) + "class_embedder.embedding_table.weight")
  for i in range(depth):
    src, dst = f"transformer_blocks.{i}.", (f"block_{i}",)
    a = src + "attn1."
    _attention(out, dst, r(a + "to_q.weight"), r(a + "to_k.weight"), r(a + "to_v.weight"), r(a + "to_q.bias"),
               r(a + "to_k.bias"), r(a + "to_v.bias"), r(a + "to_out.0.weight"), r(a + "to_out.0.bias"),
               model.num_heads)
    _linear(out, dst + ("mlp_in",), r(src + "ff.net.0.proj.weight"), r(src + "ff.net.0.proj.bias"))
    _linear(out, dst + ("mlp_out",), r(src + "ff.net.2.weight"), r(src + "ff.net.2.bias"))
    _linear(out, dst + ("adaLN", "proj"), r(src + "norm1.linear.weight"), r(src + "norm1.linear.bias"))
  _linear(out, ("final", "adaLN", "proj"), r("proj_out_1.weight"), r("proj_out_1.bias"))
  _linear(out, ("final", "linear"), r("proj_out_2.weight"), r("proj_out_2.bias"))
  r.check_all_used()
  return out


def convert(path: str, model: dit_lib.DiT) -> dict:
  """A DiT file in either layout -> {param path: array} for `model`, checked key by key and shape by shape."""
  state = files.read_state_dict(path)
  kind = layout(state)
  where = f"{path} ({kind} DiT layout)"
  flat = (from_original if kind == ORIGINAL else from_diffusers)(state, model, where)
  files.check_matches(flat, dit_lib.param_shapes(model), where)
  return flat
