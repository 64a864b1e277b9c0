"""The main job end to end (configs/quickstart.py:test) and the sampling CLI on its run."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from avdit_jax.data import clips, synthetic_av
from avdit_jax.inference import generate
from avdit_jax.media import mediafile

pytestmark = pytest.mark.xdist_group("tokenizers")
ROOT = os.path.join(os.path.dirname(__file__), "..")


def _playable(path: str, spec: clips.ClipSpec):
  got = mediafile.stream_durations(path)
  assert got["frames"] == spec.num_frames, (path, got)
  assert got["video"] == pytest.approx(spec.video_seconds), (path, got)
  assert got["audio"] == pytest.approx(spec.video_seconds, abs=0.15), (path, got)   # AAC pads its last frame


def test_quickstart_leaves_media_for_every_task_and_a_report(quickstart_run):
  root, config, report_path = quickstart_run
  gen = generate.Generator.load(str(root))
  for task in config.avdit.evals.clip_tasks.tasks:
    folder = os.path.join(root, "samples", task.replace(":", "_"))
    _playable(os.path.join(folder, "0_sample.mp4"), gen.spec)
    for suffix in ("_frames.png", "_spectrogram.png"):
      assert os.path.getsize(os.path.join(folder, "0_sample" + suffix)) > 0
    assert os.path.exists(os.path.join(folder, "0_input.mp4")) == (task != "joint")
  report = open(report_path).read()
  for task in config.avdit.evals.clip_tasks.tasks:
    assert f"## {task}" in report
  assert "| a2v_sync_ms |" in report and "| v2a_sync_ms |" in report and "untrained | shuffled" in report
  # Training moved the model: its held-out loss (same draws for both) is clearly below an untrained one's. The
  # tiny tokenizers' round trip leaves the probes at their caps, so this is the report's line that can tell.
  line = re.search(r"Held-out loss .*", report).group()
  loss = dict(re.findall(r"(model|untrained) (\d+(?:\.\d+)?(?:e[+-]?\d+)?)", line))
  assert float(loss["model"]) < 0.95 * float(loss["untrained"]), loss


@pytest.fixture(scope="module")
def foreign_mp4(tmp_path_factory):
  """A user's file on another grid: 12 fps, 48x40 pixels, 16 kHz, 2 s, made from synthetic clips."""
  spec = clips.ClipSpec(num_frames=25, frame_rate=12.0, height=48, width=40, sample_rate=16000, temporal_ratio=3)
  clip = synthetic_av.make_clip(synthetic_av.Scene(clip=spec, radius=0.12), 0, 7)
  root = tmp_path_factory.mktemp("user")
  path = str(root / "user.mp4")
  mediafile.write_mp4(path, clip["video"], spec.frame_rate, clip["audio"][spec.lead_samples:], spec.sample_rate)
  silent = str(root / "silent.mp4")
  mediafile.write_mp4(silent, clip["video"], spec.frame_rate)
  short = str(root / "short.mp4")
  mediafile.write_mp4(short, clip["video"][:6], spec.frame_rate, clip["audio"][spec.lead_samples:][:8000],
                      spec.sample_rate)
  return {"user": path, "silent": silent, "short": short}


TASKS = ("joint", "a2v", "v2a", "av_continue:1", "av_inpaint:1:1", "audio_continue:1", "video_continue:1",
         "audio:all,video:0")


@pytest.fixture(scope="module")
def gen(quickstart_run):
  return generate.Generator.load(str(quickstart_run[0]))


@pytest.mark.parametrize("task", TASKS)
def test_sampler_runs_every_task_on_a_foreign_mp4(gen, foreign_mp4, task, tmp_path):
  # The config's sampler steps, as the notebook samples: one compiled program for both (the session's cache).
  written = generate.sample_to_files(gen, task, str(tmp_path), input_path=foreign_mp4["user"])
  spec = gen.spec
  _playable(written[0]["sample"]["mp4"], spec)
  if task != "joint":
    _playable(written[0]["input"]["mp4"], spec)
    _playable(written[0]["side_by_side"]["mp4"], spec)


def test_sampler_long_form_and_video_only_input(gen, foreign_mp4, tmp_path):
  seconds = 2 * gen.spec.video_seconds
  written = generate.sample_to_files(gen, "av_continue:1", str(tmp_path), input_path=foreign_mp4["user"],
                                     seconds=seconds)
  got = mediafile.stream_durations(written[0]["sample"]["mp4"])
  assert got["video"] >= seconds - 1e-6 and got["audio"] == pytest.approx(got["video"], abs=0.15)
  # v2a needs no audio track: a silent file conditions it.
  generate.sample_to_files(gen, "v2a", str(tmp_path / "v2a"), input_path=foreign_mp4["silent"])


def test_sampler_errors_name_the_problem(gen, foreign_mp4, tmp_path):
  with pytest.raises(mediafile.MediaError, match="no audio track"):
    generate.sample_to_files(gen, "a2v", str(tmp_path), input_path=foreign_mp4["silent"], num_steps=2)
  with pytest.raises(mediafile.MediaError, match="to condition on"):
    generate.sample_to_files(gen, "a2v", str(tmp_path), input_path=foreign_mp4["short"], num_steps=2)
  with pytest.raises(ValueError, match="needs an input"):
    generate.sample_to_files(gen, "a2v", str(tmp_path), num_steps=2)
  with pytest.raises(FileNotFoundError, match="no checkpoints"):
    generate.sample_to_files(str(tmp_path), "joint", str(tmp_path / "out"))
  # The CLI turns them into a usage error that names the flags.
  out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "sample.py"), f"--workdir={tmp_path}",
                        "--task=joint", f"--out={tmp_path / 'cli'}"], capture_output=True, text=True, cwd=ROOT)
  assert out.returncode != 0 and "--workdir" in out.stderr and "no checkpoints" in out.stderr


def test_decoded_long_latents_keep_the_clip_grid(gen):
  spec = gen.spec_for(5)
  assert spec.num_frames == 1 + gen.spec.temporal_ratio * 4
  a = np.zeros((1, spec.latent_frames * (gen.pair.audio_latent_shape[0] // gen.spec.latent_frames),
                gen.pair.audio_latent_shape[1]), np.float32)
  v = np.zeros((1, 5, *gen.pair.video_latent_shape[1:]), np.float32)
  audio, frames = gen.decode(a, v)
  assert frames.shape[1] == spec.num_frames and audio.shape[1] == spec.audio_samples


def _evaluation(root, config, tasks):
  """(args, kwargs) of clip_tasks.evaluate for the fixture's run: its model and an untrained AVDiT."""
  import flax.linen as nn

  from avdit_jax.inference import codec, frontend
  from avdit_jax.train import trainees
  gen = generate.Generator.load(str(root))
  trainee = trainees.for_config(gen.run.config)
  untrained = frontend.Run.for_params(gen.run.config, trainee.module, nn.unbox(trainee.init(1)),
                                      normalizer=gen.run.normalizer)
  section = dict(config.avdit.evals.clip_tasks.to_dict(), media_per_task=0)
  args = (gen.run.config, {"model": gen.run, "untrained": untrained}, codec.load_pair(root), tasks, section)
  return args, dict(dataset=config.pipeline.dataset, tfds_dir=os.path.join(root, "tfds"))


def test_evaluation_adds_fvd_and_fad_when_asked(quickstart_run, tmp_path):
  """The report's optional set-level distances: FVD with the pinned I3D, FAD with a user's VGGish file."""
  from avdit_jax.evals import clip_tasks, features
  root, config, _ = quickstart_run
  rng = np.random.default_rng(0)
  weights = str(tmp_path / "vggish.npz")
  np.savez(weights, **{k: rng.standard_normal(s, dtype=np.float32) * 0.01 for k, s in features.vggish_shapes().items()})
  (cfg, runs, pair, tasks, section), kwargs = _evaluation(root, config, ("a2v",))
  results = clip_tasks.evaluate(cfg, runs, pair, tasks, dict(section, fvd=True, fad_weights=weights), **kwargs)
  for name in ("model", "untrained", "tokenizer"):
    assert results["a2v"][name]["fvd"] > 0 and results["a2v"][name]["fad"] >= 0, (name, results["a2v"][name])
  assert np.isnan(results["a2v"]["shuffled"]["fvd"])             # the real set itself: no distance
  # a2v generates only video: the audio is the given clip's, so FAD sees the tokenizer round trip only.
  assert results["a2v"]["model"]["fvd"] != results["a2v"]["tokenizer"]["fvd"]
  assert "| fvd |" in clip_tasks.markdown(results)


def test_evaluation_of_some_systems_equals_theirs_in_the_full_evaluation(quickstart_run):
  """The evaluator and tools/table1.py score the baselines once and the trained models alone: the parts must
  agree with the full evaluation."""
  from avdit_jax.evals import clip_tasks
  root, config, _ = quickstart_run
  args, kwargs = _evaluation(root, config, ("v2a", "a2v"))
  full = clip_tasks.evaluate(*args, **kwargs)
  alone = clip_tasks.evaluate(*args, **kwargs, systems=("untrained",))
  rest = clip_tasks.evaluate(*args, **kwargs, systems=("model", "shuffled"))
  for task in ("v2a", "a2v"):
    assert set(alone[task]) == {"untrained"} and set(rest[task]) == {"model", "shuffled"}
    assert {**alone[task], **rest[task]} == {k: v for k, v in full[task].items() if k != "tokenizer"}, task
  with pytest.raises(ValueError, match="systems"):
    clip_tasks.evaluate(*args, **kwargs, systems=("trained",))
