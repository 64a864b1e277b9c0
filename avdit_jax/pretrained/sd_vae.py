"""The Stable Diffusion VAE (diffusers' AutoencoderKL, e.g. sd-vae-ft-ema's diffusion_pytorch_model.safetensors)
into models/sd_vae.AutoencoderKL.

  {encoder,decoder}.conv_in / conv_norm_out / conv_out              -> conv_in / norm_out / conv_out
  encoder.down_blocks.I.resnets.J / .downsamplers.0.conv             -> encoder/down_I_resnet_J / down_I_downsample
  decoder.up_blocks.I.resnets.J / .upsamplers.0.conv                 -> decoder/up_I_resnet_J / up_I_upsample
  *.mid_block.resnets.K / .attentions.0.{group_norm,to_q,to_k,to_v,to_out.0}  -> mid/resnet_K / mid/attention/...
  quant_conv, post_quant_conv                                        -> the same names
Older files name the attention's layers query / key / value / proj_attn (read as to_q / to_k / to_v / to_out).
Conv weights [O, I, kh, kw] become kernels [kh, kw, I, O], Linear weights [O, I] kernels [I, O], GroupNorm's
weight its scale.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from avdit_jax.models import sd_vae
from avdit_jax.pretrained import files

RENAMES = (
    (r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder/down_\1_resnet_\2/"),
    (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.", r"encoder/down_\1_downsample/"),
    (r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.", r"decoder/up_\1_resnet_\2/"),
    (r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.", r"decoder/up_\1_upsample/"),
    (r"^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.", r"\1/mid/resnet_\2/"),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.(?:to_out\.0|proj_attn)\.", r"\1/mid/attention/to_out/"),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.(?:to_q|query)\.", r"\1/mid/attention/to_q/"),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.(?:to_k|key)\.", r"\1/mid/attention/to_k/"),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.(?:to_v|value)\.", r"\1/mid/attention/to_v/"),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.group_norm\.", r"\1/mid/attention/group_norm/"),
    (r"^(encoder|decoder)\.conv_norm_out\.", r"\1/norm_out/"),
    (r"^(encoder|decoder)\.(conv_in|conv_out)\.", r"\1/\2/"),
    (r"^(quant_conv|post_quant_conv)\.", r"\1/"),
)
NORMS = ("norm1", "norm2", "group_norm", "norm_out")
LINEARS = ("to_q", "to_k", "to_v", "to_out")


def conv_kernel(weight: np.ndarray) -> np.ndarray:
  return weight.transpose(2, 3, 1, 0)                       # [O, I, kh, kw] -> [kh, kw, I, O]


def _param(module: str, name: str, value: np.ndarray, key: str) -> tuple[str, np.ndarray]:
  last = module.rsplit("/", 1)[-1]
  if name == "bias":
    return "bias", value
  if name != "weight":
    raise ValueError(f"{key}: expected a weight or a bias.")
  if last in NORMS:
    return "scale", value
  if last in LINEARS:                                       # Linear [O, I] (or a 1x1 conv [O, I, 1, 1] in old files)
    return "kernel", value.reshape(value.shape[:2]).T
  return "kernel", conv_kernel(value)


def from_diffusers(state: dict, where: str) -> dict:
  out = {}
  for key, value in state.items():
    for pattern, replacement in RENAMES:
      renamed, hits = re.subn(pattern, replacement, key)
      if hits:
        module, _, name = renamed.replace(".", "/").rpartition("/")
        param, array = _param(module, name, np.asarray(value, np.float32), f"{where}: {key}")
        out[tuple(module.split("/")) + (param,)] = array
        break
    else:
      raise ValueError(f"{where}: {key} (shape {tuple(np.shape(value))}) is not a weight of an AutoencoderKL.")
  return out


def param_shapes(model: sd_vae.AutoencoderKL, size: int = 32) -> dict:
  x = jnp.zeros((1, size, size, 3))
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x)["params"])
  return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(params).items()}


def convert(path: str, model: sd_vae.AutoencoderKL) -> dict:
  """An AutoencoderKL file -> {param path: array} for `model`, checked key by key and shape by shape."""
  where = f"{path} (diffusers AutoencoderKL)"
  flat = from_diffusers(files.read_state_dict(path), where)
  files.check_matches(flat, param_shapes(model, 4 * model.downsampling), where)
  return flat
