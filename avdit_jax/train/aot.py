"""Ahead-of-time compilation for TPU topologies from a CPU host (libtpu installed: `pip install -e ".[tpu]"`).

`compile_report(config, "v5p:4x4x4")` builds config's mesh on that topology's devices, lowers and
compiles the real sharded train step (trainer.build) and one guided sampling step (sample.make_step with
the params sharded as in training) for them, and reports per-chip memory against the chip's HBM, XLA's
FLOPs next to the analytic count, and the collectives of the compiled programs. Nothing runs on a TPU.

The analytic count it compares with is the hardware count: for training 3 x forward (the model FLOPs of
MFU) plus what remat recomputes (model.count_remat_flops); XLA's count is every loop at its trip count
(_counted_flops, compiled again only when a loop of the real programs holds matmuls). Either model kind
(factory.model: AVDiT or AV-DiT, by model.kind) compiles; the analytic counts are factory.count_flops /
count_remat_flops of that kind.
"""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from avdit_jax import factory
from avdit_jax.core import monl, sampling
from avdit_jax.models import avdit
from avdit_jax.perf import hlo_text
from avdit_jax.train import sharding, trainer

# Per chip, by the device kind libtpu reports (longest matching prefix): HBM in GiB, and the bf16 peak
# FLOP/s from public spec sheets (for the projection only).
HBM_GIB = {"TPU v4": 32, "TPU v5 lite": 16, "TPU v5e": 16, "TPU v5": 95, "TPU v5p": 95, "TPU v6 lite": 32,
           "TPU v6e": 32}
PEAK_BF16 = {"TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5": 459e12, "TPU v5p": 459e12,
             "TPU v6 lite": 918e12, "TPU v6e": 918e12}
# For the FLOP-count compiles only: XLA's cost analysis counts a while loop's body once, and on some slices
# (v5e:4x4) XLA turns the FSDP all-gathers / reduce-scatters into windowed einsums, loops of one shard's
# matmul, so their FLOPs would go missing. The programs whose memory and collectives are reported keep them.
NO_WINDOWED_EINSUM = {"xla_tpu_enable_windowed_einsum_for_all_gather": False,
                      "xla_tpu_enable_windowed_einsum_for_reduce_scatter": False}


def topology_devices(name: str) -> list:
  """The devices of a TPU topology such as 'v5e:2x2' or 'v5p:4x4x4' (needs libtpu, not a TPU)."""
  # Compiling only: let several processes (xdist workers, parallel tool runs) load libtpu at once.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  try:
    from jax.experimental import topologies
    return list(topologies.get_topology_desc(platform="tpu", topology_name=name).devices)
  except Exception as e:  # noqa: BLE001 - libtpu missing or an unknown name: say which
    raise ValueError(f"topology {name!r}: cannot be described ({type(e).__name__}: {e}). It needs libtpu "
                     "(pip install -e '.[tpu]') and a name like 'v5e:2x2', 'v5p:4x4x4' or 'v6e:16x16'.") from e


def by_kind(table: dict, device):
  """table's entry for the device's kind (longest matching prefix), or None."""
  kind = getattr(device, "device_kind", "")
  return next((v for k, v in sorted(table.items(), key=lambda kv: -len(kv[0])) if kind.startswith(k)), None)


def hbm_bytes(device) -> int | None:
  gib = by_kind(HBM_GIB, device)
  return None if gib is None else gib * 2**30


def _memory(compiled) -> dict:
  m = compiled.memory_analysis()
  return {"argument": m.argument_size_in_bytes, "output": m.output_size_in_bytes, "temp": m.temp_size_in_bytes,
          "alias": m.alias_size_in_bytes,
          "total": m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes}


def _summary(compiled, keep_hlo: bool) -> dict:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  hlo = compiled.as_text()
  out = {"memory": _memory(compiled), "xla_flops_per_chip": float(cost.get("flops", 0.0)),
         "collectives": hlo_text.collectives(hlo)}
  return {**out, "hlo": hlo} if keep_hlo else out


def compile_train_step(config, devices, options=None, *, keep_hlo: bool = False) -> dict:
  mesh = sharding.make_mesh(config, devices)
  setup = trainer.build(config, mesh)
  with jax.set_mesh(mesh):
    compiled = setup.step_fn.lower(setup.abstract_state, trainer.abstract_batch(config, setup)).compile(options)
  layout = avdit.layout_for(setup.model, tuple(config.data.audio_shape), tuple(config.data.video_shape))
  recompute = factory.count_remat_flops(setup.model, layout, config.data.batch_size)
  return {**_summary(compiled, keep_hlo), "analytic_flops": setup.step_flops,
          "analytic_hw_flops": setup.step_flops + recompute, "setup": setup, "mesh": mesh,
          "params": setup.selection.count(setup.abstract_state.params)}     # (trainable, total)


def compile_sampling_step(config, setup: trainer.Setup, mesh, options=None, *, keep_hlo: bool = False) -> dict:
  """One reverse step of the a2v task with guidance (two network passes, batched) at the training batch."""
  model = setup.model
  weights = sampling.guidance_weights(config.sampling.guidance)
  sampler = factory.sampler(config, guidance=tuple(max(w, 1.0) for w in weights))
  b = config.data.batch_size
  params = setup.abstract_state.params
  batch = trainer.abstract_batch(config, setup)
  rng_sharding = NamedSharding(mesh, P())
  mask = monl.task_mask("a2v", config.num_segments)

  def one_step(params, audio, video, z_audio, z_video, rng):
    step = sampling.make_step(avdit.network(model), sampler)
    cond = sampling.make_condition(sampler, mask, audio, video)
    with nn.logical_axis_rules(setup.axis_rules):     # the activations' shardings, as in training
      out = step(sampling.State(z_audio, z_video, rng), jnp.int32(0), cond, params)
    return out.audio, out.video

  shardings = (jax.tree.map(lambda a: a.sharding, params), setup.batch_sharding["audio"], setup.batch_sharding["video"],
               setup.batch_sharding["audio"], setup.batch_sharding["video"], rng_sharding)
  fn = jax.jit(one_step, in_shardings=shardings, out_shardings=(setup.batch_sharding["audio"],
                                                                 setup.batch_sharding["video"]))
  rng = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=rng_sharding)
  with jax.set_mesh(mesh):
    compiled = fn.lower(params, batch["audio"], batch["video"], batch["audio"], batch["video"], rng).compile(options)
  layout = avdit.layout_for(model, tuple(config.data.audio_shape), tuple(config.data.video_shape))
  flops = factory.count_flops(model, layout, 2 * b)
  return {**_summary(compiled, keep_hlo), "analytic_flops": flops, "analytic_hw_flops": flops}


def both_steps(config, devices, options=None, *, keep_hlo: bool = False) -> tuple[dict, dict]:
  """compile_train_step and compile_sampling_step of config on devices (the summaries without setup and mesh)."""
  trained = compile_train_step(config, devices, options, keep_hlo=keep_hlo)
  sampled = compile_sampling_step(config, trained.pop("setup"), trained.pop("mesh"), options, keep_hlo=keep_hlo)
  return trained, sampled


def _loops_hide_flops(hlo: str) -> bool:
  """Whether XLA's cost analysis of this program misses FLOPs: a while loop of matmuls that runs more than once
  (its body is counted once)."""
  return any(loop["body_flops"] and (loop["trip_count"] or 2) > 1 for loop in hlo_text.loops(hlo))


def _counted_flops(config, devices) -> tuple[float, float]:
  """XLA FLOPs per chip of the train and sampling steps, every loop counted at its trip count.

  XLA's cost analysis counts a loop body once: a scan over the layers, and the windowed einsums XLA may
  make of FSDP's collectives. So the counts come from the same steps compiled with the layers unrolled at
  depth 1 and 2 and windowed einsums off (small compiles), extrapolated linearly to the real depth."""
  counts = []
  for depth in (1, 2):
    c = config.copy_and_resolve_references()
    with c.unlocked():
      c.model.depth = depth
      if "scan_layers" in c.model:          # AVDiT's; AV-DiT's blocks are never scanned
        c.model.scan_layers = False
    t, s = both_steps(c, devices, NO_WINDOWED_EINSUM, keep_hlo=True)
    if _loops_hide_flops(t["hlo"]) or _loops_hide_flops(s["hlo"]):
      raise RuntimeError(f"the FLOP-count compile at depth {depth} still has matmuls in while loops; "
                         "see tools/aot_loops.py")
    counts.append((t["xla_flops_per_chip"], s["xla_flops_per_chip"]))
  depth = factory.model(config).depth
  return tuple(one + (depth - 1) * (two - one) for one, two in zip(*counts))


def compile_report(config, topology: str, *, mfu: float = 0.5, peak_flops_per_chip: float | None = None) -> dict:
  """Compiles the train and sampling steps of config for a TPU topology; see the module docstring."""
  devices = topology_devices(topology)
  try:
    trained, sampled = both_steps(config, devices, keep_hlo=True)
  except ValueError as e:
    if "mesh.shape" in str(e):
      raise ValueError(f"{topology} has {len(devices)} chips: {e}") from None
    raise
  # Programs without loops of matmuls (no scanned layers, no windowed einsums) are counted whole by XLA: the
  # four FLOP-count compiles are only needed when a loop hides some.
  hlos = [part.pop("hlo") for part in (trained, sampled)]
  recount = any(_loops_hide_flops(hlo) for hlo in hlos)
  if recount:
    trained["xla_flops_per_chip"], sampled["xla_flops_per_chip"] = _counted_flops(config, devices)
  chips = len(devices)
  hbm = hbm_bytes(devices[0])
  peak = peak_flops_per_chip or by_kind(PEAK_BF16, devices[0])
  out = {"topology": topology, "chips": chips, "device_kind": devices[0].device_kind, "hbm_per_chip": hbm,
         "params": trained.pop("params"), "train": trained, "sample": sampled, "flops_recounted": recount}
  for part in (trained, sampled):
    part["fits"] = hbm is None or part["memory"]["total"] <= hbm
    part["flops_ratio"] = part["xla_flops_per_chip"] * chips / max(part["analytic_hw_flops"], 1.0)
  if peak:
    step_s = trained["analytic_flops"] / (chips * peak * mfu)
    out.update(projected_step_s=step_s, projected_examples_per_s=config.data.batch_size / step_s, mfu=mfu)
  return out


def markdown_row(config_name: str, r: dict) -> str:
  gib = lambda b: f"{b / 2**30:.2f}"
  t, s = r["train"], r["sample"]
  top = lambda c: ", ".join(f"{k} x{v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1])[:3]) or "none"
  proj = f"{r['projected_examples_per_s']:.1f}" if "projected_examples_per_s" in r else "?"
  return (f"| {config_name} | {r['topology']} ({r['chips']}) | {gib(t['memory']['total'])} / "
          f"{gib(r['hbm_per_chip'] or 0)} | {'yes' if t['fits'] and s['fits'] else 'NO'} | "
          f"{t['analytic_flops']:.3g} | {t['analytic_hw_flops'] / t['analytic_flops']:.3f} | {t['flops_ratio']:.3f} | "
          f"{s['flops_ratio']:.3f} | {proj} | {top(t['collectives'])} | {r['params'][0] / 1e6:.3g}M / "
          f"{r['params'][1] / 1e6:.3g}M |")


MARKDOWN_HEADER = ("| config | topology (chips) | train GiB per chip / HBM | fits | train model FLOPs/step | "
                   "+ remat | XLA / analytic, train | XLA / analytic, sample | examples/s at 50% MFU | "
                   "top collectives (train) | params trainable / total |\n" + "|---" * 11 + "|")


def describe(r: dict) -> str:
  hbm = (r["hbm_per_chip"] or 0) / 2**30
  lines = [f"{r['topology']}: {r['chips']} x {r['device_kind']}, HBM {hbm:.0f} GiB per chip; params "
           f"{r['params'][0]:,} trainable of {r['params'][1]:,}"]
  for name in ("train", "sample"):
    p = r[name]
    m = {k: v / 2**30 for k, v in p["memory"].items()}
    lines.append(f"  {name}: per chip argument {m['argument']:.3f} / output {m['output']:.3f} / temp {m['temp']:.3f} "
                 f"GiB (total {m['total']:.3f}, fits: {p['fits']}); "
                 f"FLOPs XLA {p['xla_flops_per_chip'] * r['chips']:.4g} vs analytic {p['analytic_hw_flops']:.4g} "
                 f"({p['flops_ratio']:.3f}); collectives {p['collectives']}")
  if "projected_step_s" in r:
    lines.append(f"  projected at {r['mfu']:.0%} MFU: {r['projected_step_s'] * 1e3:.1f} ms/step, "
                 f"{r['projected_examples_per_s']:.1f} examples/s")
  return "\n".join(lines)
