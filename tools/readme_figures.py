r"""The README's figures from a finished main job: per task, its real clips above the samples generated from them.

  python tools/readme_figures.py --workdir=W --out=docs/figures

Reads the comparisons the job's evaluation wrote (W/samples/<task>/<k>_compare.png: a real clip's frame strip and
spectrogram above the sample's; avdit_jax/evals/clip_tasks.py) and stacks a task's samples into <out>/<task>.png.
"""

import io

import numpy as np
from absl import app, flags
from PIL import Image

from avdit_jax import paths
from avdit_jax.media import images

flags.DEFINE_string("workdir", None, "A finished main job's workdir (configs/quickstart.py).", required=True)
flags.DEFINE_string("out", "docs/figures", "Where the PNGs go.")
flags.DEFINE_list("tasks", ["joint", "a2v", "v2a", "av_continue:1", "av_inpaint:1:1"], "Tasks, as the job names them.")
FLAGS = flags.FLAGS


def main(_):
  out = paths.path(FLAGS.out)
  out.mkdir(parents=True, exist_ok=True)
  for task in FLAGS.tasks:
    folder = paths.path(FLAGS.workdir) / "samples" / task.replace(":", "_")
    found = sorted(folder.glob("*_compare.png")) if folder.is_dir() else []
    if not found:
      raise app.UsageError(f"--tasks {task}: no {folder}/*_compare.png (run the main job with this task in "
                              "config.avdit.evals.clip_tasks.tasks and media_per_task > 0).")
    pictures = [np.asarray(Image.open(io.BytesIO(p.read_bytes())).convert("RGB")) for p in found]
    buffer = io.BytesIO()
    Image.fromarray(images.stacked(pictures, gap=12)).save(buffer, format="PNG")
    (out / f"{task.replace(':', '_')}.png").write_bytes(buffer.getvalue())
    print(f"{out / (task.replace(':', '_') + '.png')}: {len(found)} samples")


if __name__ == "__main__":
  app.run(main)
