"""The latent format and its grain pipeline: round trip, process rows, position, validation, resume."""

import json

import numpy as np
import pytest
from array_record.python import array_record_module

from avdit_jax import factory
from avdit_jax.data import latents, streams
from avdit_jax.train import trainer
from train_test import load_config

NUM_CLIPS = 48


def _config(directory, **data_fields):
  config = load_config(arg="test")
  config.data.kind = "latents"
  config.data.dir = str(directory)
  config.data.num_workers = 0
  config.data.normalize = True
  for k, v in data_fields.items():
    config.data[k] = v
  return config


@pytest.fixture(scope="module")
def latent_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("latents")
  config = _config(directory)
  streams.write_gaussian_latents(factory.gaussian_toy(config), config, str(directory), NUM_CLIPS, num_shards=3)
  return directory


def test_written_latents_read_back_normalised(latent_dir):
  meta = latents.Metadata.read(str(latent_dir))
  assert meta.num_clips == NUM_CLIPS and len(meta.shards) == 3
  config = _config(latent_dir, batch_size=NUM_CLIPS)
  batch = next(iter(streams.latent_dataset(config)))
  assert batch["audio"].shape == (NUM_CLIPS, 8, 2) and batch["video"].shape == (NUM_CLIPS, 4, 4, 4, 2)
  # One epoch is the whole set once, and per-channel statistics normalise it.
  np.testing.assert_allclose(batch["video"].reshape(-1, 2).mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(batch["video"].reshape(-1, 2).std(0), 1.0, atol=1e-4)
  config.data.normalize = False
  raw = next(iter(streams.latent_dataset(config)))
  assert not np.allclose(raw["video"], batch["video"])
  ids = {tuple(row) for row in np.round(raw["audio"].reshape(NUM_CLIPS, -1), 5)}
  assert len(ids) == NUM_CLIPS                                     # no clip twice within an epoch


def test_processes_read_their_rows_of_the_same_global_batch(latent_dir):
  config = _config(latent_dir, batch_size=8)
  whole = iter(streams.latent_dataset(config, process_index=0, process_count=1))
  parts = [iter(streams.latent_dataset(config, process_index=p, process_count=2)) for p in range(2)]
  for _ in range(7):                                               # past the end of an epoch (48 / 8 = 6)
    expected = next(whole)
    got = [next(it) for it in parts]
    for key in ("audio", "video"):
      np.testing.assert_array_equal(np.concatenate([g[key] for g in got]), expected[key])


def test_iterator_state_restores_the_position(latent_dir):
  config = _config(latent_dir, batch_size=8)
  it = iter(streams.latent_dataset(config))
  for _ in range(3):
    next(it)
  state = json.loads(json.dumps(it.get_state()))                   # as the checkpoint stores it
  expected = [next(it) for _ in range(4)]
  stream = streams.GrainStream(streams.latent_dataset(config), state)
  for e in expected:
    np.testing.assert_array_equal(next(stream)["video"], e["video"])


def test_multiworker_prefetch_gives_the_same_batches(latent_dir):
  config = _config(latent_dir, batch_size=8)
  plain = iter(streams.latent_dataset(config))
  config.data.num_workers = 2
  prefetched = iter(streams.latent_dataset(config))
  for _ in range(3):
    np.testing.assert_array_equal(next(plain)["audio"], next(prefetched)["audio"])


def test_bad_inputs_name_the_culprit(latent_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match="data.dir: .* is not a directory"):
    latents.Metadata.read(str(tmp_path / "nowhere"))
  with pytest.raises(FileNotFoundError, match="metadata.json is missing"):
    latents.Metadata.read(str(tmp_path))
  with pytest.raises(ValueError, match=r"video_shape \(4, 4, 4, 2\) but config.data.video_shape is \(4, 4, 4, 3\)"):
    streams.latent_dataset(_config(latent_dir, video_shape=(4, 4, 4, 3)))
  # A record whose shape disagrees with the metadata, and one with NaN, each named.
  for name, video in (("short", np.zeros((3, 4, 4, 2), np.float32)),
                      ("nan", np.full((4, 4, 4, 2), np.nan, np.float32))):
    bad = tmp_path / name                   # written by another producer of the format, which the writer would refuse
    bad.mkdir()
    shard = latents.shard_name(0, 1)
    out = array_record_module.ArrayRecordWriter(str(bad / shard), "group_size:1")
    out.write(latents.encode("good-0", np.zeros((8, 2), np.float32), np.zeros((4, 4, 4, 2), np.float32)))
    out.write(latents.encode(f"bad-{name}", np.zeros((8, 2), np.float32), video))
    out.close()
    stats = dict(audio_mean=[0.0] * 2, audio_std=[1.0] * 2, video_mean=[0.0] * 2, video_std=[1.0] * 2)
    latents.Metadata((8, 2), (4, 4, 4, 2), 2, [shard], 4, stats).write(str(bad))
    with pytest.raises(ValueError, match=f"clip 'bad-{name}' has (video|non-finite video)"):
      for _ in zip(range(4), iter(streams.latent_dataset(_config(bad, batch_size=2, normalize=False)))):
        pass
  empty = tmp_path / "empty"
  latents.LatentWriter(str(empty), (8, 2), (4, 4, 4, 2), 4).close()
  with pytest.raises(ValueError, match="the data set is empty"):
    latents.Metadata.read(str(empty))
  with pytest.raises(ValueError, match="non-finite"):
    latents.LatentWriter(str(tmp_path / "w"), (8, 2), (4, 4, 4, 2), 4).write(
        "x", np.full((8, 2), np.inf), np.zeros((4, 4, 4, 2)))


def test_training_on_latents_resumes_exactly_including_the_data_position(latent_dir, tmp_path):
  def run(workdir, steps):
    config = _config(latent_dir, batch_size=8)
    config.train.num_steps = steps
    config.checkpoint.every_steps = 3
    config.checkpoint.async_save = False
    config.evals = {}
    return trainer.train_and_evaluate(config, str(workdir))

  ref = run(tmp_path / "ref", 9)          # 9 steps of 8 clips cross the 48-clip epoch boundary
  run(tmp_path / "split", 3)
  got = run(tmp_path / "split", 9)
  rows = lambda d: [trainer.deterministic(json.loads(line)) for line in open(d / "metrics.jsonl")]
  assert rows(tmp_path / "split") == rows(tmp_path / "ref")
  np.testing.assert_array_equal(np.asarray(ref.params["video_embed"]["kernel"]),
                                np.asarray(got.params["video_embed"]["kernel"]))
