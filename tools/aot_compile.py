r"""Compile a config's train and sampling steps for TPU topologies on this CPU host, and report.

  python tools/aot_compile.py --config=configs/paper.py:xl --topology=v5p:4x4x4 --topology=v6e:16x16
  python tools/aot_compile.py --config=configs/gaussian.py:test --topology=v5e:2x2 --config.mesh.shape='(1,-1,1)'
  python tools/aot_compile.py --config=configs/av_dit_paper.py --topology=v5p:2x2x4     # either model.kind
  python tools/aot_compile.py --report        # the scaling report of WORKSPACE.md: every row of REPORT

Needs libtpu (pip install -e ".[tpu]"), not a TPU. Prints per-chip memory (argument / output / temp) against
the chip's HBM, FLOPs per step from XLA next to the analytic count, the collectives, and the projected
step time at --mfu; then one markdown row per topology (the scaling report's format, WORKSPACE.md).
Exit status 1 when a program does not fit in HBM.
"""

import os
import sys

# Compile for TPU, run nothing: the CPU stays the default backend, and libtpu's complaints about the missing
# TPU environment (harmless for compilation) are quieted.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Config file with an optional ':variant'.", lock_config=True)
flags.DEFINE_multi_string("topology", ["v5e:2x2"], "TPU topology names, e.g. v5p:4x4x4 (repeat the flag).")
flags.DEFINE_float("mfu", 0.5, "MFU for the projected step time.")
flags.DEFINE_bool("report", False, "Compile every (config, topology) of REPORT and print the scaling table.")
FLAGS = flags.FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The scaling report: paper-scale configs (configs/paper.py) on slices, with the overrides a bigger slice needs
# (each mesh axis a product of the torus's axes, FSDP dividing the width, a batch row per chip at least).
REPORT = [
    ("configs/paper.py:b,v5e", "v5e:4x4"),
    ("configs/paper.py:l,v5e", "v5e:4x4"),
    ("configs/paper.py:xl,v5e", "v5e:16x16"),
    ("configs/paper.py:b,v5p", "v5p:4x4x4"),
    ("configs/paper.py:l,v5p", "v5p:4x4x4"),
    ("configs/paper.py:xl,v5p", "v5p:4x4x4"),
    ("configs/paper.py:xl,v5p", "v5p:8x8x8", {"mesh.shape": (-1, 64, 1), "data.batch_size": 1024}),
    ("configs/paper.py:xl,landscape,v5p", "v5p:4x4x4"),
    ("configs/paper.py:b,v6e", "v6e:16x16"),
    ("configs/paper.py:l,v6e", "v6e:16x16"),
    ("configs/paper.py:xl,v6e", "v6e:16x16"),
    ("configs/av_dit_paper.py", "v5p:2x2x4"),       # AV-DiT over a frozen DiT-XL/2-256, SD-VAE latents
]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from avdit_jax import factory
  from avdit_jax.train import aot
  if FLAGS.report:
    jobs = []
    for spec, topology, *overrides in REPORT:
      config = factory.load_config(os.path.join(ROOT, spec))
      for key, value in (overrides[0] if overrides else {}).items():
        section, field = key.split(".")
        config[section][field] = value
      label = spec.split("/")[-1] + "".join(f" {k}={v}" for k, v in (overrides[0] if overrides else {}).items())
      jobs.append((label, config, topology))
  elif FLAGS.config is None:
    raise app.UsageError("give --config (and --topology), or --report.")
  else:
    name = os.path.basename(sys.argv[[a.startswith("--config=") for a in sys.argv].index(True)].split("=", 1)[1])
    jobs = [(name, FLAGS.config, topology) for topology in FLAGS.topology]
  rows, fits = [], True
  for name, config, topology in jobs:
    report = aot.compile_report(config, topology, mfu=FLAGS.mfu)
    print(f"{name} on {topology}:\n" + aot.describe(report), flush=True)
    rows.append(aot.markdown_row(name, report))
    fits &= report["train"]["fits"] and report["sample"]["fits"]
  print("\n" + aot.MARKDOWN_HEADER + "\n" + "\n".join(rows))
  if not fits:
    print("does not fit in HBM: change the mesh, remat or batch", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  from avdit_jax import factory      # after the environment above is set: it imports jax
  factory.run_app(main)
