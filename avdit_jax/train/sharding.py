"""Meshes, logical axis rules and shardings, all from config.

config.mesh.axes / config.mesh.shape name the mesh (sizes may hold one -1: "the rest of the devices");
config.mesh.rules map the model's logical axis names onto mesh axes. Data parallel, FSDP and tensor
parallel are the same code with different shapes:

  data parallel  shape (-1, 1, 1)    FSDP  shape (1, -1, 1)    FSDP + tensor  shape (1, -1, 2)

A logical axis whose mesh axis is already taken in the same array (e.g. 'embed' -> fsdp in an
activation whose batch is on fsdp) stays unsharded: one rule set serves params and activations.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DEFAULT_AXES = ("data", "fsdp", "tensor")
DEFAULT_RULES = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("modulation", "tensor"),
    ("kv", None),
    ("length", None),
    ("layers", None),
    ("patch", None),
    ("freq", None),
    ("embed_out", None),
)


def mesh_shape(axes: Sequence[str], shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
  """Resolves one -1 in `shape` and checks that the mesh uses exactly the devices there are."""
  axes, shape = tuple(axes), [int(s) for s in shape]
  if len(axes) != len(shape):
    raise ValueError(f"config.mesh.shape {tuple(shape)} and config.mesh.axes {axes} differ in length.")
  if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
    raise ValueError(f"config.mesh.shape {tuple(shape)}: sizes must be positive, with at most one -1.")
  known = int(np.prod([s for s in shape if s != -1]))
  if -1 in shape:
    if num_devices % known:
      raise ValueError(f"config.mesh.shape {tuple(shape)} does not divide the {num_devices} devices "
                       f"(the fixed axes take {known}).")
    shape[shape.index(-1)] = num_devices // known
  if int(np.prod(shape)) != num_devices:
    raise ValueError(f"config.mesh.shape {tuple(shape)} needs {int(np.prod(shape))} devices, but there are "
                     f"{num_devices}.")
  return tuple(shape)


def make_mesh(config, devices=None) -> Mesh:
  """The mesh of config.mesh over `devices` (default: all), with Auto axes (sharding by annotation)."""
  devices = jax.devices() if devices is None else devices
  axes = tuple(config.mesh.axes)
  shape = mesh_shape(axes, config.mesh.shape, len(devices))
  try:
    return jax.make_mesh(shape, axes, devices=devices, axis_types=(jax.sharding.AxisType.Auto,) * len(axes))
  except NotImplementedError as e:   # a TPU torus: each mesh axis must be a product of physical axes
    raise ValueError(f"config.mesh.shape {shape} cannot be laid out on the devices' physical topology ({e})") from None


def single_device_mesh(config) -> Mesh:
  """config.mesh's axes, each of size 1, on the first device: for loading params to the host."""
  axes = tuple(config.mesh.axes)
  return jax.make_mesh((1,) * len(axes), axes, devices=jax.devices()[:1],
                       axis_types=(jax.sharding.AxisType.Auto,) * len(axes))


def rules(config) -> tuple:
  axes = set(config.mesh.axes)
  out = tuple((name, tuple(m) if isinstance(m, (list, tuple)) else m) for name, m in config.mesh.rules)
  for name, target in out:
    for axis in (target if isinstance(target, tuple) else (target,)):
      if axis is not None and axis not in axes:
        raise ValueError(f"config.mesh.rules: logical axis {name!r} maps to {axis!r}, which is not in mesh.axes "
                         f"{tuple(config.mesh.axes)}.")
  return out


def logical_shardings(boxed_abstract, mesh: Mesh, axis_rules) -> object:
  """NamedShardings for a tree of (abstract) values boxed with logical names; unboxed leaves replicate."""
  specs = nn.get_partition_spec(boxed_abstract)
  return nn.logical_to_mesh_sharding(specs, mesh, axis_rules)


def check_param_divisible(abstract, shardings, mesh: Mesh) -> None:
  """Every sharded dimension must split evenly; else an error naming the array and config.mesh."""
  def check(path, leaf, sh):
    for dim, axes in zip(leaf.shape, sh.spec):
      names = axes if isinstance(axes, tuple) else (axes,) if axes else ()
      ways = int(np.prod([mesh.shape[n] for n in names])) if names else 1
      if dim % ways:
        raise ValueError(f"config.mesh.shape {tuple(mesh.shape.values())}: {jax.tree_util.keystr(path)} of shape "
                         f"{tuple(leaf.shape)} would be split {ways} ways over {names} along a dimension of {dim}; "
                         "choose mesh sizes that divide it (or map its logical axis elsewhere in config.mesh.rules).")
  jax.tree_util.tree_map_with_path(check, abstract, shardings)


def batch_sharding(mesh: Mesh, axis_rules, ndim: int) -> NamedSharding:
  """Leading batch axis by the 'batch' rule, the rest replicated."""
  spec = nn.logical_to_mesh_axes(("batch",) + (None,) * (ndim - 1), axis_rules)
  return NamedSharding(mesh, spec)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_divisible(global_batch: int, mesh: Mesh, axis_rules) -> None:
  spec = nn.logical_to_mesh_axes(("batch",), axis_rules)[0]
  names = spec if isinstance(spec, tuple) else (spec,) if spec else ()
  shards = int(np.prod([mesh.shape[n] for n in names])) if names else 1
  if global_batch % shards:
    raise ValueError(f"data.batch_size {global_batch} is not divisible by the {shards} batch shards of the "
                     f"mesh {dict(mesh.shape)}.")


def global_batch(local: dict, shardings: dict) -> dict:
  """This process's rows of the batch -> global arrays with the given shardings (train.Setup.batch_sharding)."""
  return {k: jax.make_array_from_process_local_data(shardings[k], np.asarray(v)) for k, v in local.items()}


def replicate_like(params, tree):
  """`tree` (host values, the same on every process) replicated over the mesh that `params` live on, so a jitted
  call mixes them with sharded params on any number of processes; unchanged when params are not on a mesh."""
  mesh = next((x.sharding.mesh for x in jax.tree.leaves(params)
               if isinstance(x, jax.Array) and isinstance(x.sharding, NamedSharding)), None)
  if mesh is None:
    return tree
  everywhere = NamedSharding(mesh, P())
  def place(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, everywhere, lambda index: x[index])
  return jax.tree.map(place, tree)


def to_host(tree):
  """Arrays of any sharding on any number of processes -> whole numpy arrays on this process.

  Replicated arrays are read from a local copy; a sharded array that this process sees whole is assembled
  from its shards; otherwise the shards are gathered from every process (multihost_utils.process_allgather),
  so in a multi-process run every process must call this at the same point for such arrays."""
  from jax.experimental import multihost_utils

  def fetch(x):
    if not isinstance(x, jax.Array):
      return x
    if x.sharding.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    if x.is_fully_addressable:
      return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return jax.tree.map(fetch, tree)

