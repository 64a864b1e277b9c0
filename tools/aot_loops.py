r"""The while loops of a config's train and sampling steps compiled for a TPU topology: their trip counts,
the matmul FLOPs of one iteration and the op they came from. XLA's cost analysis counts a loop body once;
this shows what that leaves out, e.g. the windowed einsums (collective matmuls) that XLA makes of FSDP's
all-gathers on v5e:4x4.

  python tools/aot_loops.py --config=configs/paper.py:b,v5e --topology=v5e:4x4
  python tools/aot_loops.py --config=configs/paper.py:b,v5e --topology=v5e:4x4 --windowed_einsum=false

Compiles with the layers unrolled at depth 1 (small and quick). For each step it prints XLA's FLOPs and the
matmul FLOPs read from the HLO, with each loop once and at its trip count, over the analytic count.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")

from absl import app, flags  # noqa: E402

from avdit_jax import factory
from avdit_jax.perf import hlo_text
from avdit_jax.train import aot  # noqa: E402

flags.DEFINE_string("config", "configs/paper.py:b,v5e", "Config file with an optional ':variant'.")
flags.DEFINE_string("topology", "v5e:4x4", "libtpu topology name.")
flags.DEFINE_bool("windowed_einsum", True, "Let XLA make windowed einsums (false: aot.NO_WINDOWED_EINSUM).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  config = factory.load_config(FLAGS.config)
  with config.unlocked():
    config.model.scan_layers, config.model.depth = False, 1
  options = None if FLAGS.windowed_einsum else aot.NO_WINDOWED_EINSUM
  devices = aot.topology_devices(FLAGS.topology)
  train, sample = aot.both_steps(config, devices, options, keep_hlo=True)
  chips = len(devices)
  for name, r in (("train", train), ("sample", sample)):
    hlo = r["hlo"]
    ratio = lambda flops, r=r: f"{flops * chips / r['analytic_hw_flops']:.3f}"
    found = hlo_text.loops(hlo)
    print(f"{name}: over the analytic count, XLA {ratio(r['xla_flops_per_chip'])}; HLO matmuls with each loop "
          f"once {ratio(hlo_text.matmul_flops(hlo, with_trips=False))}, at its trip count "
          f"{ratio(hlo_text.matmul_flops(hlo))}; {len(found)} while loops")
    for loop in found:
      print(f"  trips {loop['trip_count'] or '?':>3}  matmul FLOPs per iteration {loop['body_flops']:.3g}  "
            f"{loop['op_name']}")


if __name__ == "__main__":
  app.run(main)
