"""LoRA (Hu et al., 2021) on any linen module's params, as a function of the param tree: no module changes.

A targeted kernel W (fan-in axes I, fan-out axes O) gets W' = W + (alpha / rank) * (A @ B) reshaped to W's shape,
A [*lead, prod(I), rank] random and B [*lead, rank, prod(O)] zero, so training starts at the base model. `lead`
is a scanned model's 'layers' axis. The LoRA tree mirrors the params' nesting, each targeted kernel's name holding
{'a', 'b'}; `merge` gives the plain params that sampling uses (and that the loss sees while training).
"""

from __future__ import annotations

import dataclasses
import math
import re

import jax
import jax.numpy as jnp
from flax import traverse_util

# name -> (regex over '/'-joined param paths, fan-in axes, fan-out axes) of the kernels it targets. The attention
# kernels are [D, H, Dh] (q, k, v) and [H, Dh, D] (out); the block MLP's are [D, F] and [F, D] (models/avdit.py).
TARGETS = {
    "q": (r"(^|/)attn/query_kernel$", 1, 2),
    "k": (r"(^|/)attn/key_kernel$", 1, 2),
    "v": (r"(^|/)attn/value_kernel$", 1, 2),
    "out": (r"(^|/)attn/out_kernel$", 2, 1),
    "mlp": (r"^(block_\d+|blocks)/mlp_(in|out)/kernel$", 1, 1),
}


@dataclasses.dataclass(frozen=True)
class LoraSpec:
  rank: int = 8
  alpha: float = 8.0
  targets: tuple = ("q", "k", "v", "out", "mlp")

  def __post_init__(self):
    unknown = sorted(set(self.targets) - set(TARGETS))
    if unknown or not self.targets:
      raise ValueError(f"train.lora.targets: unknown {unknown or 'empty'}; expected some of {list(TARGETS)}.")
    if self.rank < 1:
      raise ValueError(f"train.lora.rank: {self.rank}; expected a positive integer.")

  @property
  def scale(self) -> float:
    return self.alpha / self.rank


def _path(key: tuple) -> str:
  return "/".join(str(k) for k in key)


def targeted(params, spec: LoraSpec) -> dict:
  """{path tuple: (lead shape, fan-in size, fan-out size)} of the kernels spec targets (shapes only)."""
  out = {}
  for key, leaf in traverse_util.flatten_dict(params).items():
    for name in spec.targets:
      pattern, n_in, n_out = TARGETS[name]
      if re.search(pattern, _path(key)):
        shape = tuple(leaf.shape)
        lead = shape[:len(shape) - n_in - n_out]
        fan_in = math.prod(shape[len(lead):len(lead) + n_in])
        fan_out = math.prod(shape[len(lead) + n_in:])
        out[key] = (lead, fan_in, fan_out)
  if not out:
    raise ValueError(f"train.lora.targets {list(spec.targets)}: no parameter matches (paths look like "
                     f"{_path(next(iter(traverse_util.flatten_dict(params))))!r}).")
  return out


def init(params, spec: LoraSpec, rng: jax.Array) -> dict:
  """The LoRA tree for params: A ~ N(0, 1 / fan_in) (so A's outputs have unit scale), B = 0."""
  flat = {}
  for i, (key, (lead, fan_in, fan_out)) in enumerate(sorted(targeted(params, spec).items())):
    a = jax.random.normal(jax.random.fold_in(rng, i), (*lead, fan_in, spec.rank), jnp.float32) / jnp.sqrt(fan_in)
    flat[key] = {"a": a, "b": jnp.zeros((*lead, spec.rank, fan_out), jnp.float32)}
  return traverse_util.unflatten_dict(flat)


def merge(params, lora: dict, spec: LoraSpec):
  """params with every LoRA'd kernel replaced by W + scale * A @ B (same shapes and dtypes)."""
  flat = traverse_util.flatten_dict(params)
  factors = traverse_util.flatten_dict(lora, is_leaf=lambda _, x: isinstance(x, dict) and "a" in x)
  for key, ab in factors.items():
    w = flat[key]
    delta = jnp.einsum("...ir,...ro->...io", ab["a"], ab["b"]) * spec.scale        # (*lead, fan_in, fan_out)
    flat[key] = w + delta.reshape(w.shape).astype(w.dtype)
  return traverse_util.unflatten_dict(flat)
