"""What trains: config.train.trainable picks the parameters the optimizer updates; the rest are frozen.

  'all'                      every parameter (the state is exactly that of a run without this field)
  'blocks,heads'             named groups (GROUPS), comma-separated
  any other text             a regex searched in '/'-joined parameter paths, e.g. 'block_[23]/|_head/'
  'lora'                     LoRA factors (models/lora.py, config.train.lora: rank, alpha, targets) on frozen params

Frozen parameters get no gradient, no optimizer state and no EMA, and are never written: the train step splits
the params into (trainable, frozen) subtrees, differentiates, updates and averages the trainable one only, and
joins the two again. The state's ema_params and opt_state hold the trainable subtree only. With LoRA the params
carry the factors under the top-level key 'lora'; `model_params` merges them into the kernels for the loss, and
`sampling_params` gives what sampling uses (EMA or raw, LoRA merged).
"""

from __future__ import annotations

import dataclasses
import re

import jax
import ml_collections
from flax import traverse_util

from avdit_jax.models import av_dit
from avdit_jax.models import lora as lora_lib

LORA_KEY = "lora"

# Named groups of parameters, as regexes over '/'-joined paths (AVDiT's names and the image DiT's).
GROUPS = {
    "embeddings": r"^(audio_embed|video_embed|modality_embed|x_embed|y_embed)(/|$)",
    "conditioning": r"^t_embed/",
    "blocks": r"^(block_\d+|blocks)/",
    "attention": r"^(block_\d+|blocks)/attn/",
    "mlp": r"^(block_\d+|blocks)/mlp_(in|out)/",
    "adaln": r"/adaLN/",
    "heads": r"^(audio_head|video_head|final)/",
    # AV-DiT's own params (models/av_dit.py): training these alone keeps its image DiT frozen.
    "adapters": av_dit.ADAPTERS,
}


def _path(key: tuple) -> str:
  return "/".join(str(k) for k in key)


@dataclasses.dataclass(frozen=True)
class Selection:
  """The trainable subset of a param tree. `pattern` None: everything trains; with `lora` only its factors."""
  spec: str = "all"
  pattern: str | None = None
  lora: lora_lib.LoraSpec | None = None

  @property
  def everything(self) -> bool:
    return self.pattern is None and self.lora is None

  def add(self, params, rng: jax.Array):
    """The params of a new run: the model's, plus the LoRA factors when training LoRA (params may be boxed)."""
    if self.lora is None:
      return params
    import flax.linen as nn
    return {**params, LORA_KEY: lora_lib.init(nn.unbox(params), self.lora, rng)}

  def is_trainable(self, key: tuple) -> bool:
    if self.lora is not None:
      return key[0] == LORA_KEY
    return self.pattern is None or re.search(self.pattern, _path(key)) is not None

  def split(self, params):
    """(trainable, frozen) subtrees of params; with everything training, (params, {})."""
    if self.everything:
      return params, {}
    flat = traverse_util.flatten_dict(params)
    chosen = {k: v for k, v in flat.items() if self.is_trainable(k)}
    if not chosen:
      raise ValueError(f"train.trainable {self.spec!r} selects no parameter; paths look like "
                       f"{_path(next(iter(flat)))!r}.")
    frozen = {k: v for k, v in flat.items() if k not in chosen}
    return traverse_util.unflatten_dict(chosen), traverse_util.unflatten_dict(frozen)

  def join(self, trainable, frozen):
    if self.everything:
      return trainable
    return traverse_util.unflatten_dict({**traverse_util.flatten_dict(frozen),
                                         **traverse_util.flatten_dict(trainable)})

  def model_params(self, params):
    """What the module applies: params with the LoRA factors merged into their kernels (and removed)."""
    if self.lora is None:
      return params
    base = {k: v for k, v in params.items() if k != LORA_KEY}
    return lora_lib.merge(base, params[LORA_KEY], self.lora)

  def sampling_params(self, params, ema_params, use_ema: bool):
    """The params sampling uses: the EMA of the trainable ones (or the raw ones) with the frozen ones, merged."""
    if use_ema:
      params = self.join(ema_params, self.split(params)[1])
    return self.model_params(params)

  def count(self, params) -> tuple[int, int]:
    """(trainable, total) numbers of parameters; total counts the model's, not the LoRA factors'."""
    trainable, _ = self.split(params)
    n = lambda tree: sum(int(x.size) for x in jax.tree.leaves(tree))
    return n(trainable), n({k: v for k, v in params.items() if k != LORA_KEY})


EVERYTHING = Selection()


def for_config(config: ml_collections.ConfigDict) -> Selection:
  """The Selection that config.train.trainable names (default 'all'); errors name the field."""
  spec = str(config.train.get("trainable", "all")).strip()
  if spec == "all":
    return EVERYTHING
  if spec == "lora":
    c = dict(config.train.get("lora", {}))
    unknown = sorted(set(c) - {f.name for f in dataclasses.fields(lora_lib.LoraSpec)})
    if unknown:
      raise ValueError(f"train.lora: unknown fields {unknown}; expected some of rank, alpha, targets.")
    if "targets" in c:
      c["targets"] = tuple(c["targets"])
    return Selection(spec, lora=lora_lib.LoraSpec(**c))
  names = [n.strip() for n in spec.split(",")]
  if all(n in GROUPS for n in names):
    return Selection(spec, pattern="|".join(f"(?:{GROUPS[n]})" for n in names))
  try:
    re.compile(spec)
  except re.error as e:
    raise ValueError(f"train.trainable {spec!r}: neither 'all', 'lora', groups of {sorted(GROUPS)} nor a regex "
                     f"({e}).") from None
  return Selection(spec, pattern=spec)
