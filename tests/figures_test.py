"""The README's figures: the job writes, per sample, the real clip above the generated one; the tool stacks them."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from avdit_jax.media import images

pytestmark = pytest.mark.xdist_group("tokenizers")
ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_comparison_puts_each_clip_in_its_own_row_at_scale():
  rng = np.random.default_rng(0)
  real, fake = (rng.integers(0, 255, (9, 8, 6, 3), dtype=np.uint8) for _ in range(2))
  audio = rng.standard_normal(4000).astype(np.float32)
  picture = images.comparison([(real, audio), (fake, audio)], 8000, scale=3)
  strip = images.frame_strip(real).repeat(3, 0).repeat(3, 1)
  h, w = strip.shape[:2]
  np.testing.assert_array_equal(picture[:h, :w], strip)                           # real on top, nearest x3
  np.testing.assert_array_equal(picture[h + 4:2 * h + 4, :w], images.frame_strip(fake).repeat(3, 0).repeat(3, 1))
  assert picture.shape[0] == 2 * h + 4


def test_job_writes_comparisons_and_the_tool_stacks_them(quickstart_run, tmp_path):
  root, config, _ = quickstart_run
  tasks = config.avdit.evals.clip_tasks.tasks
  for task in tasks:
    compare = np.asarray(Image.open(os.path.join(root, "samples", task.replace(":", "_"), "0_compare.png")))
    sample = np.asarray(Image.open(os.path.join(root, "samples", task.replace(":", "_"), "0_sample_frames.png")))
    h, w = (3 * n for n in sample.shape[:2])
    np.testing.assert_array_equal(compare[-h:, :w, :3], sample[..., :3].repeat(3, 0).repeat(3, 1))  # sample below
  out = tmp_path / "figures"
  done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "readme_figures.py"), f"--workdir={root}",
                         f"--out={out}", "--tasks=" + ",".join(tasks)], capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-2000:]
  assert sorted(os.listdir(out)) == sorted(t.replace(":", "_") + ".png" for t in tasks)
  bad = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "readme_figures.py"), f"--workdir={root}",
                        f"--out={out}", "--tasks=audio_continue:2"], capture_output=True, text=True)
  assert bad.returncode != 0 and "--tasks audio_continue:2: no " in bad.stderr and "Traceback" not in bad.stderr


def test_curve_tabulates_the_evaluations_during_training(quickstart_run):
  root, config, _ = quickstart_run
  tool = [sys.executable, os.path.join(ROOT, "tools", "curve.py"), f"--workdir={root}"]
  done = subprocess.run(tool + ["--scores=a2v/a2v_sync_ms,joint/pitch_colour"], capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-2000:]
  header, _, *rows = done.stdout.strip().splitlines()
  assert header == "| step | loss | a2v/a2v_sync_ms | joint/pitch_colour |"
  assert [int(r.split("|")[1]) for r in rows] == [config.avdit.train.num_steps]    # every_steps 0: after the last
  bad = subprocess.run(tool + ["--scores=a2v/nope"], capture_output=True, text=True)
  assert bad.returncode != 0 and "--scores a2v/nope: not logged" in bad.stderr
