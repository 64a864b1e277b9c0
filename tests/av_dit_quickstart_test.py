"""AV-DiT's CPU recipe (configs/av_dit_quickstart.py:test) on the quickstart test run's data, tokenizers and latents:
an image DiT on the first latent frames, frozen inside an AV-DiT trained with MoNL, the report, and every kind of
task through the CLI's and the notebook's sampling path (generate.sample_to_files)."""

import os
import re
import shutil

import flax.linen as nn
import jax
import numpy as np
import pytest
from flax import traverse_util

from avdit_jax import factory, pipeline
from avdit_jax.data import latents, streams
from avdit_jax.inference import generate
from avdit_jax.models import av_dit
from avdit_jax.train import checkpoint, trainer

pytestmark = pytest.mark.xdist_group("tokenizers")     # it shares the quickstart_run fixture
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def recipe(quickstart_run, tmp_path_factory):
  base, _, _ = quickstart_run
  work = tmp_path_factory.mktemp("av_dit_quickstart")
  for stage in ("tfds", "video_tokenizer", "audio_tokenizer", "latents"):     # reused as the stages find them
    shutil.copytree(base / stage, work / stage)
  config = factory.load_config(os.path.join(ROOT, "configs", "av_dit_quickstart.py") + ":test")
  return work, config, pipeline.run(config, str(work))


def test_recipe_freezes_the_pretrained_image_dit_and_reports_every_task(recipe):
  work, config, report_path = recipe
  report = open(report_path).read()
  for task in config.avdit.evals.clip_tasks.tasks:
    assert f"## {task}" in report, task
  assert re.search(r"\| v2a_sync_ms \| [\d.]+", report) and re.search(r"\| a2v_sync_ms \| [\d.]+", report)
  assert "(AV-DiT step" in report and "an untrained AV-DiT" in report

  image_dir, run_dir = str(work / "image_dit"), str(work / "avdit")
  image_cfg, saved = checkpoint.saved_config(image_dir), checkpoint.saved_config(run_dir)
  assert image_cfg.trainee == "image_dit" and image_cfg.train.trainable == "all"
  assert saved.model.kind == "av_dit" and saved.train.trainable == "adapters" and saved.init_from == image_dir
  image, _, step = trainer.restore_params(image_cfg, image_dir, use_ema=bool(image_cfg.sampling.use_ema))
  assert step == config.image_dit.train.num_steps
  tuned, _, _ = trainer.restore_params(saved, run_dir, use_ema=False)
  flat_image, flat_tuned = (traverse_util.flatten_dict(jax.device_get(p)) for p in (image, tuned))
  backbone = {k for k in flat_tuned if not re.search(av_dit.ADAPTERS, "/".join(k))}
  assert backbone == flat_image.keys()       # every DiT param is the AV-DiT's backbone ...
  for k in backbone:                          # ... and it is the pretrained one, untouched by AV-DiT's training
    np.testing.assert_array_equal(flat_tuned[k], flat_image[k], err_msg="/".join(k))
  init = traverse_util.flatten_dict(jax.device_get(nn.unbox(factory.image_dit(image_cfg).init(
      jax.random.PRNGKey(image_cfg.seed), np.zeros((1, *image_cfg.data.video_shape[1:]), np.float32),
      np.zeros((1,)))["params"])))
  assert any(not np.array_equal(np.asarray(init[k]), flat_image[k]) for k in flat_image)   # the first stage trained


def test_image_stage_reads_the_first_latent_frame(recipe):
  work, config, _ = recipe
  latents_dir = str(work / "latents" / "train")
  sub = pipeline.avdit_config(config, latents_dir, latents.Metadata.read(latents_dir))
  clips, frames = next(streams.latent_stream(sub)), next(streams.first_frame_stream(sub))
  assert frames.keys() == {"video"}
  np.testing.assert_array_equal(frames["video"], clips["video"][:, 0])


@pytest.mark.parametrize("task", ["joint", "a2v", "v2a", "av_continue:1", "audio:all,video:0"])
def test_every_task_samples_from_the_av_dit_workdir_as_the_cli_and_notebook_do(recipe, task, tmp_path):
  work, _, _ = recipe
  gen = generate.Generator.load(str(work))                  # tools/sample.py's and tools/demo.ipynb's loader
  assert gen.run.config.model.kind == "av_dit"
  given = next(p for p, _, names in os.walk(work / "samples") for n in names if n.endswith("_input.mp4"))
  clip = os.path.join(given, sorted(n for n in os.listdir(given) if n.endswith("_input.mp4"))[0])
  [written] = generate.sample_to_files(gen, task, str(tmp_path), input_path=None if task == "joint" else clip,
                                       num_steps=2)
  assert os.path.getsize(written["sample"]["mp4"]) > 0
