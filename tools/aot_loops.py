r"""Which matmuls XLA put in while loops (windowed einsums) when compiling for a TPU topology, and why the
cost analysis undercounts them (it counts a loop body once).

  python tools/aot_loops.py --config=configs/paper.py:b,v5e --topology=v5e:4x4

Compiles the train and sampling steps with the layers unrolled at depth 1 (small and quick), prints the
XLA / analytic FLOP ratios and every while loop with its trip-count constant and the op it came from.
"""

import os
import re

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import app, flags  # noqa: E402

from avdit_jax import aot, factory  # noqa: E402

flags.DEFINE_string("config", "configs/paper.py:b,v5e", "Config file with an optional ':variant'.")
flags.DEFINE_string("topology", "v5e:4x4", "libtpu topology name.")
FLAGS = flags.FLAGS


def loops(hlo: str) -> list[tuple[str, str]]:
  """(trip-count constant or '?', op name) of each while loop in compiled HLO text."""
  out = []
  for m in re.finditer(r"while\(%[^)]*\), condition=%([\w.\-]+), body=%[\w.\-]+, metadata=\{op_name=\"([^\"]+)\"", hlo):
    cond = re.search(r"\n%" + re.escape(m.group(1)) + r" .*?\n\}", hlo, re.S)
    limit = re.search(r"constant\((\d+)\)", cond.group(0)) if cond else None
    out.append((limit.group(1) if limit else "?", m.group(2)))
  return out


def main(argv):
  del argv
  config = factory.load_config(FLAGS.config)
  with config.unlocked():
    config.model.scan_layers, config.model.depth = False, 1
  kept = []
  summary = aot._summary
  aot._summary = lambda compiled: (kept.append(compiled), summary(compiled))[1]
  devices = aot.topology_devices(FLAGS.topology)
  train = aot.compile_train_step(config, devices)
  sample = aot.compile_sampling_step(config, train.pop("setup"), train.pop("mesh"))
  for name, r, compiled in (("train", train, kept[0]), ("sample", sample, kept[1])):
    ratio = r["xla_flops_per_chip"] * len(devices) / r["analytic_flops"]
    found = loops(compiled.as_text())
    print(f"{name}: XLA / analytic FLOPs {ratio:.3f}; {len(found)} while loops")
    for limit, op in found:
      print(f"  trip-count constant {limit:>3}  {op}")


if __name__ == "__main__":
  app.run(main)
