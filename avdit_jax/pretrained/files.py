"""Weight files in and out, running no code from them: safetensors, or PyTorch's .pt read with weights_only.

A user's public checkpoint is read as a state dict {name: numpy array} (`read_state_dict`); a converted one is
written as safetensors whose keys are this project's '/'-joined param paths (`write_params`, `read_params`,
format FORMAT), which config.init_from reads. `check_matches` is the one shape-and-key check of both.
Paths may be remote (paths.py): safetensors and torch read local files, so a remote one is staged first.
"""

from __future__ import annotations

import pickle

import numpy as np

from avdit_jax import paths

FORMAT = "avdit_jax/params/v1"
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """A state dict from a .safetensors file, or a .pt / .pth / .bin file read by torch.load(weights_only=True)
  (tensors and plain containers only: a pickle that would build any other object is refused). A training
  checkpoint {'model', 'ema', ...} gives its 'ema' weights when present, else 'model'."""
  if not paths.path(path).exists():
    raise FileNotFoundError(f"weights file {path}: no such file.")
  if path.endswith(".safetensors"):
    from safetensors.numpy import load_file
    return dict(load_file(paths.local_copy(path)))
  if not path.endswith(TORCH_SUFFIXES):
    raise ValueError(f"weights file {path}: expected .safetensors or one of {TORCH_SUFFIXES}.")
  try:
    import torch
  except ImportError:
    raise ImportError(f"weights file {path}: reading PyTorch files needs torch (pip install -e '.[parity]'), "
                      "or convert it to .safetensors first.") from None
  try:
    loaded = torch.load(paths.local_copy(path), map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as e:
    raise ValueError(f"weights file {path}: refused, its pickle holds more than tensors and would run code "
                     f"when loaded ({str(e).splitlines()[0][:200]}).") from None
  if isinstance(loaded, dict) and not any(isinstance(v, torch.Tensor) for v in loaded.values()):
    for key in ("ema", "model", "state_dict"):
      if isinstance(loaded.get(key), dict):
        loaded = loaded[key]
        break
  if not isinstance(loaded, dict):
    raise ValueError(f"weights file {path}: expected a state dict, got {type(loaded).__name__}.")
  return {k: v.detach().float().numpy() if v.is_floating_point() else v.numpy()
          for k, v in loaded.items() if isinstance(v, torch.Tensor)}


def write_params(path: str, flat: dict[tuple, np.ndarray], source: str = "") -> None:
  """Converted params {path tuple: array} to a safetensors file that config.init_from reads."""
  from safetensors.numpy import save
  target = paths.path(path)
  target.parent.mkdir(parents=True, exist_ok=True)
  data = save({"/".join(k): np.ascontiguousarray(v) for k, v in flat.items()},
              metadata={"format": FORMAT, "source": source})
  part = target.parent / (target.name + ".part")   # written whole, then renamed: a kill leaves no torn file
  part.write_bytes(data)
  part.rename(target)


def read_params(path: str) -> dict[tuple, np.ndarray]:
  """A file that write_params wrote: {path tuple: array}."""
  if not path.endswith(".safetensors") or not paths.path(path).exists():
    raise FileNotFoundError(f"{path}: expected a converted .safetensors file (tools/convert_weights.py) or a run's "
                            "workdir.")
  from safetensors import safe_open
  with safe_open(paths.local_copy(path), framework="np") as f:
    fmt = (f.metadata() or {}).get("format")
    if fmt != FORMAT:
      raise ValueError(f"{path}: format {fmt!r}, expected {FORMAT!r}; convert public weights with "
                       "tools/convert_weights.py first.")
    return {tuple(k.split("/")): f.get_tensor(k) for k in f.keys()}


def shape_differences(have: dict, want: dict) -> tuple[list, list, list]:
  """(keys only in `have`, keys in both whose shapes differ, keys only in `want`), each sorted; values are shapes."""
  extra = sorted(have.keys() - want.keys())
  differ = sorted(k for k in have.keys() & want.keys() if tuple(have[k]) != tuple(want[k]))
  return extra, differ, sorted(want.keys() - have.keys())


def check_matches(weights: dict[tuple, np.ndarray], shapes: dict[tuple, tuple], where: str, *,
                  partial: bool = False) -> None:
  """Every weight must be a param of the model with its shape; unless `partial`, every param must be there."""
  extra, differ, missing = shape_differences({k: v.shape for k, v in weights.items()}, shapes)
  if extra:
    raise ValueError(f"{where}: {'/'.join(extra[0])} (shape {tuple(weights[extra[0]].shape)}) is not a parameter "
                     "of the model.")
  if differ:
    raise ValueError(f"{where}: {'/'.join(differ[0])} has shape {tuple(weights[differ[0]].shape)}, the model's has "
                     f"{tuple(shapes[differ[0]])}.")
  if missing and not partial:
    raise ValueError(f"{where}: no weights for {'/'.join(missing[0])} (shape {tuple(shapes[missing[0]])})"
                     + (f" and {len(missing) - 1} more" if len(missing) > 1 else "") + ".")
