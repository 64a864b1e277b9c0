"""Converters of public weights (avdit_jax/pretrained) against the reference PyTorch modules at random init.

diffusers' DiTTransformer2DModel and AutoencoderKL (the `parity` extra) are built tiny with random weights, saved
as a user would have them, converted and run on the same inputs: float32 outputs within 1e-4 relative error. A
deliberately wrong mapping must fail the same comparison, and wrong keys or shapes are refused by name.
"""

import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from flax import traverse_util  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from avdit_jax.models import dit as dit_lib  # noqa: E402
from avdit_jax.pretrained import dit as dit_conv  # noqa: E402
from avdit_jax.pretrained import files  # noqa: E402

TOL = 1e-4
HEADS, HEAD_DIM, SIZE, CLASSES = 2, 8, 8, 10


def rel_err(ours, ref) -> float:
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  return float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))


def _randomize(module, seed):
  torch.manual_seed(seed)
  with torch.no_grad():
    for p in module.parameters():
      p.normal_(0.0, 0.3)


# ============================================================================= DiT


@pytest.fixture(scope="module")
def diffusers_dit():
  model = diffusers.DiTTransformer2DModel(num_attention_heads=HEADS, attention_head_dim=HEAD_DIM, in_channels=4,
                                          out_channels=8, num_layers=2, sample_size=SIZE, patch_size=2,
                                          num_embeds_ada_norm=CLASSES, norm_eps=1e-6).eval()
  _randomize(model, 0)
  with torch.no_grad():                 # one shared embedder, as in every converted DiT checkpoint
    for block in model.transformer_blocks[1:]:
      block.norm1.emb.load_state_dict(model.transformer_blocks[0].norm1.emb.state_dict())
  return model


def _dit_model():
  return dit_lib.DiT(input_size=SIZE, patch=2, in_channels=4, out_channels=8, depth=2, width=HEADS * HEAD_DIM,
                     num_heads=HEADS, num_classes=CLASSES, freq_shift=1.0)


def _dit_inputs():
  rng = np.random.default_rng(0)
  return (rng.normal(size=(3, 4, SIZE, SIZE)).astype(np.float32), np.array([0, 17, 999]),
          np.array([1, 9, 4]))


def _dit_error(model_torch, flat, labels: bool) -> float:
  x, t, y = _dit_inputs()
  null = np.full_like(y, CLASSES)           # no label: the embedding table's last row (classifier-free guidance's)
  with torch.no_grad():
    ref = model_torch(torch.from_numpy(x), timestep=torch.from_numpy(t),
                      class_labels=torch.from_numpy(y if labels else null)).sample.numpy()
  params = traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()})
  ours = _dit_model().apply({"params": params}, jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(t),
                            jnp.asarray(y) if labels else None)
  return rel_err(np.asarray(ours).transpose(0, 3, 1, 2), ref)


def to_original_layout(state: dict) -> dict:
  """diffusers' DiT state dict in the original checkpoint's layout: the inverse of the mapping that diffusers'
  scripts/convert_dit_to_diffusers.py documents (written here on its own, not taken from the converter)."""
  out, n = {}, len({k.split(".")[1] for k in state if k.startswith("transformer_blocks.")})
  rename = {"pos_embed.proj": "x_embedder.proj", "proj_out_1": "final_layer.adaLN_modulation.1",
            "proj_out_2": "final_layer.linear",
            "transformer_blocks.0.norm1.emb.timestep_embedder.linear_1": "t_embedder.mlp.0",
            "transformer_blocks.0.norm1.emb.timestep_embedder.linear_2": "t_embedder.mlp.2"}
  for i in range(n):
    rename.update({f"transformer_blocks.{i}.norm1.linear": f"blocks.{i}.adaLN_modulation.1",
                   f"transformer_blocks.{i}.attn1.to_out.0": f"blocks.{i}.attn.proj",
                   f"transformer_blocks.{i}.ff.net.0.proj": f"blocks.{i}.mlp.fc1",
                   f"transformer_blocks.{i}.ff.net.2": f"blocks.{i}.mlp.fc2"})
    for p in ("weight", "bias"):
      out[f"blocks.{i}.attn.qkv.{p}"] = torch.cat([state[f"transformer_blocks.{i}.attn1.to_{c}.{p}"] for c in "qkv"])
  for old, new in rename.items():
    for p in ("weight", "bias"):
      out[f"{new}.{p}"] = state[f"{old}.{p}"]
  out["y_embedder.embedding_table.weight"] = state[
      "transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight"]
  out["pos_embed"] = torch.from_numpy(dit_lib.positional_encoding(SIZE // 2, HEADS * HEAD_DIM))[None]
  return out


@pytest.fixture(scope="module")
def dit_files(diffusers_dit, tmp_path_factory):
  where = tmp_path_factory.mktemp("dit")
  diffusers_dit.save_pretrained(where / "diffusers")                     # diffusion_pytorch_model.safetensors
  torch.save(to_original_layout(diffusers_dit.state_dict()), where / "DiT-original.pt")
  return {"diffusers": str(where / "diffusers" / "diffusion_pytorch_model.safetensors"),
          "original": str(where / "DiT-original.pt")}


@pytest.mark.parametrize("kind", ["diffusers", "original"])
@pytest.mark.parametrize("labels", [True, False], ids=["class_labels", "no_label"])
def test_dit_matches_diffusers(diffusers_dit, dit_files, kind, labels):
  flat = dit_conv.convert(dit_files[kind], _dit_model())
  assert dit_conv.layout(files.read_state_dict(dit_files[kind])) == kind
  assert _dit_error(diffusers_dit, flat, labels) <= TOL


def test_dit_wrong_mappings_fail_parity(diffusers_dit, dit_files, monkeypatch):
  attention = dit_conv._attention
  swapped = lambda out, block, q, k, *rest: attention(out, block, k, q, *rest)           # q and k swapped
  monkeypatch.setattr(dit_conv, "_attention", swapped)
  assert _dit_error(diffusers_dit, dit_conv.convert(dit_files["diffusers"], _dit_model()), True) > 100 * TOL
  monkeypatch.undo()
  linear = dit_conv._linear
  untransposed = lambda out, path, w, b: linear(out, path, w.T if path == ("t_embed", "mlp_out") else w, b)
  monkeypatch.setattr(dit_conv, "_linear", untransposed)                  # a square kernel left [out, in]
  assert _dit_error(diffusers_dit, dit_conv.convert(dit_files["original"], _dit_model()), True) > 100 * TOL


def test_dit_wrong_keys_and_shapes_are_refused(dit_files, tmp_path):
  state = files.read_state_dict(dit_files["diffusers"])
  narrow = _dit_model().clone(out_channels=4)
  with pytest.raises(ValueError, match=r"final/linear/bias has shape \(32,\), the model.s has \(16,\)"):
    dit_conv.convert(dit_files["diffusers"], narrow)
  cases = {"stray": ({**state, "extra.weight": np.zeros(3, np.float32)}, r"extra.weight \(shape \(3,\)\) is not a "
                                                                           "weight of a DiT"),
           "missing": ({k: v for k, v in state.items() if k != "proj_out_2.bias"}, "no proj_out_2.bias in the file"),
           "untied": ({**state, "transformer_blocks.1.norm1.emb.timestep_embedder.linear_1.bias":
                       state["transformer_blocks.1.norm1.emb.timestep_embedder.linear_1.bias"] + 1},
                      "transformer_blocks.1.norm1.emb.timestep_embedder.linear_1.bias differs from block 0's")}
  for name, (bad, message) in cases.items():
    path = tmp_path / f"{name}.safetensors"
    save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in bad.items()}, str(path))
    with pytest.raises(ValueError, match=message):
      dit_conv.convert(str(path), _dit_model())


def test_a_converted_dits_blocks_fit_an_avdit_of_its_width(dit_files):
  from avdit_jax.models import avdit
  flat = dit_conv.convert(dit_files["original"], _dit_model())
  model = avdit.AVDiT(num_segments=1, depth=2, width=HEADS * HEAD_DIM, num_heads=HEADS, video_patch=(1, 2, 2))
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 2)), jnp.zeros((1, 1, 4, 4, 2)),
                                             jnp.zeros((1, 2, 1), jnp.int32))["params"])
  ours = {k: v.shape for k, v in traverse_util.flatten_dict(flax.linen.unbox(params)).items() if k[0] == "block_1"}
  assert ours == {k: v.shape for k, v in flat.items() if k[0] == "block_1"}


class _RunsCode:
  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def test_a_pt_whose_pickle_would_run_code_is_refused(tmp_path):
  marker = tmp_path / "ran"
  payload = _RunsCode()
  payload.marker = marker
  path = tmp_path / "evil.pt"
  torch.save({"x_embedder.proj.weight": torch.zeros(2), "hook": payload}, path)
  with pytest.raises(ValueError, match=r"evil.pt: refused, its pickle holds more than tensors"):
    files.read_state_dict(str(path))
  assert not marker.exists()
  torch.load(path, weights_only=False)      # what the refusal spared us: unrestricted, the pickle runs its command
  assert marker.exists()


# ============================================================================= the SD VAE

from avdit_jax.models import sd_vae  # noqa: E402
from avdit_jax.pretrained import sd_vae as vae_conv  # noqa: E402

VAE_CHANNELS, VAE_SIZE = (8, 16), 16


@pytest.fixture(scope="module")
def diffusers_vae(tmp_path_factory):
  model = diffusers.AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=VAE_CHANNELS,
                                  layers_per_block=1, latent_channels=4, norm_num_groups=4,
                                  sample_size=VAE_SIZE).eval()
  _randomize(model, 1)
  where = tmp_path_factory.mktemp("vae")
  model.save_pretrained(where)
  return model, str(where / "diffusion_pytorch_model.safetensors")


def _vae_model():
  return sd_vae.AutoencoderKL(block_out_channels=VAE_CHANNELS, layers_per_block=1, groups=4, latent_channels=4)


def _vae_errors(model_torch, flat) -> tuple[float, float]:
  rng = np.random.default_rng(1)
  x = rng.uniform(-1, 1, size=(2, 3, VAE_SIZE, VAE_SIZE)).astype(np.float32)
  z = rng.normal(size=(2, 4, VAE_SIZE // 2, VAE_SIZE // 2)).astype(np.float32)
  with torch.no_grad():
    mean = model_torch.encode(torch.from_numpy(x)).latent_dist.mean.numpy()
    decoded = model_torch.decode(torch.from_numpy(z)).sample.numpy()
  params = {"params": traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()})}
  model = _vae_model()
  ours_mean, _ = model.apply(params, jnp.asarray(x.transpose(0, 2, 3, 1)), method=model.encode)
  ours_decoded = model.apply(params, jnp.asarray(z.transpose(0, 2, 3, 1)), method=model.decode)
  return (rel_err(np.asarray(ours_mean).transpose(0, 3, 1, 2), mean),
          rel_err(np.asarray(ours_decoded).transpose(0, 3, 1, 2), decoded))


def test_sd_vae_matches_diffusers_encode_mean_and_decode(diffusers_vae):
  model_torch, path = diffusers_vae
  encode_err, decode_err = _vae_errors(model_torch, vae_conv.convert(path, _vae_model()))
  assert encode_err <= TOL and decode_err <= TOL, (encode_err, decode_err)


def test_sd_vae_wrong_mapping_fails_and_wrong_files_are_refused(diffusers_vae, monkeypatch, tmp_path):
  model_torch, path = diffusers_vae
  monkeypatch.setattr(vae_conv, "conv_kernel", lambda w: w.transpose(3, 2, 1, 0))   # kh and kw swapped
  errors = _vae_errors(model_torch, vae_conv.convert(path, _vae_model()))
  assert min(errors) > 100 * TOL, errors
  monkeypatch.undo()
  wide = _vae_model().clone(latent_channels=8)
  with pytest.raises(ValueError, match=r"decoder/conv_in/kernel has shape \(3, 3, 4, 16\), the model's has "
                                       r"\(3, 3, 8, 16\)"):
    vae_conv.convert(path, wide)
  state = files.read_state_dict(path)
  save_file({**{k: torch.from_numpy(v) for k, v in state.items()}, "encoder.extra.weight": torch.zeros(2)},
            str(tmp_path / "stray.safetensors"))
  with pytest.raises(ValueError, match=r"encoder.extra.weight \(shape \(2,\)\) is not a weight of an AutoencoderKL"):
    vae_conv.convert(str(tmp_path / "stray.safetensors"), _vae_model())


def test_frame_vae_is_the_image_vae_on_every_frame_with_the_scale_factor(diffusers_vae):
  _, path = diffusers_vae
  frame_vae = sd_vae.FrameVAE(_vae_model(), scale_factor=0.5)
  params = {"params": {"vae": traverse_util.unflatten_dict(vae_conv.convert(path, _vae_model()))}}
  frames = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, size=(2, 3, VAE_SIZE, VAE_SIZE, 3)), jnp.float32)
  latents = frame_vae.apply(params, frames, method=frame_vae.encode)
  assert latents.shape == (2, *frame_vae.latent_shape(3, VAE_SIZE, VAE_SIZE))
  vae = _vae_model()
  mean, _ = vae.apply({"params": params["params"]["vae"]}, frames[1, 2][None], method=vae.encode)
  np.testing.assert_allclose(latents[1, 2], 0.5 * mean[0], rtol=1e-5, atol=1e-6)
  decoded = frame_vae.apply(params, latents, method=frame_vae.decode)
  direct = vae.apply({"params": params["params"]["vae"]}, mean, method=vae.decode)
  np.testing.assert_allclose(decoded[1, 2], direct[0], rtol=1e-4, atol=1e-5)


def test_the_main_job_tokenizes_clips_with_a_converted_sd_vae_and_trains_on_its_latents(tmp_path):
  """configs/quickstart.py:test,sd_vae end to end with a random-init diffusers AutoencoderKL converted as
  tools/convert_weights.py does: the latents are that VAE's per-frame posterior means times the scale factor,
  the AVDiT trains on them, and the run loads and samples with the VAE as its video tokenizer."""
  from avdit_jax import factory, pipeline
  from avdit_jax.data import datasets, latents
  from avdit_jax.inference import generate
  channels = (8, 8, 8, 8)                     # 4 levels: f = 8, 32x32 frames -> 4x4x4, the quickstart's 48 tokens
  torch.manual_seed(3)
  model_torch = diffusers.AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=channels,
                                        layers_per_block=1, latent_channels=4, norm_num_groups=4,
                                        sample_size=32).eval()
  model_torch.save_pretrained(tmp_path / "vae")
  converted = str(tmp_path / "sd_vae.safetensors")
  vae = sd_vae.AutoencoderKL(block_out_channels=channels, layers_per_block=1, groups=4, latent_channels=4)
  files.write_params(converted, vae_conv.convert(str(tmp_path / "vae" / "diffusion_pytorch_model.safetensors"), vae))

  config = factory.load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "quickstart.py:test,sd_vae"))
  config.video_tokenizer.update(weights=converted, scale_factor=0.5)
  config.video_tokenizer.vae.update(block_out_channels=channels, layers_per_block=1, groups=4)
  config.audio_tokenizer.train.num_steps = 10          # the audio tokenizer is not what this test is about
  config.avdit.evals.clip_tasks.tasks = ("a2v", "av_continue:1")   # two tasks are enough to see it samples
  workdir = str(tmp_path / "run")
  report = open(pipeline.run(config, workdir)).read()
  assert "## a2v" in report and "## av_continue:1" in report and "| a2v_sync_ms |" in report

  meta = latents.Metadata.read(os.path.join(workdir, "latents", "train"))
  assert tuple(meta.video_shape) == (12, 4, 4, 4) and tuple(meta.audio_shape) == (60, 8), meta
  clip = latents.read_clips(os.path.join(workdir, "latents", "train"), meta, 1)[0]
  source, _ = datasets.data_source("synthetic_av/tiny_frames", "train", os.path.join(workdir, "tfds"))
  ids = [source[i]["clip_id"] for i in range(len(source))]
  frames = source[[i.decode() if isinstance(i, bytes) else str(i) for i in ids].index(clip["clip_id"])]["video"]
  with torch.no_grad():                       # the reference VAE on each frame of that clip, NCHW in [-1, 1]
    x = torch.from_numpy(frames.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)
    want = 0.5 * model_torch.encode(x).latent_dist.mean.permute(0, 2, 3, 1).numpy()
  assert rel_err(clip["video"], want) <= TOL, rel_err(clip["video"], want)

  assert os.path.isdir(os.path.join(workdir, "avdit", "checkpoints", str(config.avdit.train.num_steps)))
  gen = generate.Generator.load(workdir)                # the run in use: the VAE is found again by frame_vae.json
  assert isinstance(gen.pair.video.module, sd_vae.FrameVAE) and gen.spec.temporal_ratio == 1
  audio, video = gen.pair.decode(clip["audio"][None], clip["video"][None])
  assert video.shape == (1, 12, 32, 32, 3) and audio.shape == (1, 12000)


def test_an_sd_vae_video_tokenizer_needs_a_grid_of_ratio_1_and_its_own_shapes(tmp_path):
  from avdit_jax import factory
  from avdit_jax.inference import codec
  config = factory.load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "quickstart.py:test,sd_vae"))
  with pytest.raises(ValueError, match=r"^video_tokenizer.weights is empty"):
    codec.frame_vae(config.video_tokenizer, config.pipeline.dataset, str(tmp_path))
  config.video_tokenizer.weights = str(tmp_path / "none.safetensors")
  with pytest.raises(ValueError, match=r"temporal ratio 1\), but data set 'synthetic_av/tiny' has ratio 4"):
    codec.frame_vae(config.video_tokenizer, "synthetic_av/tiny", str(tmp_path))
  vae = sd_vae.AutoencoderKL(block_out_channels=(8, 8, 8, 8), layers_per_block=1, groups=4, latent_channels=4)
  flat = {k: np.zeros(s, np.float32) for k, s in vae_conv.param_shapes(vae).items()}
  files.write_params(config.video_tokenizer.weights, flat)
  with pytest.raises(ValueError, match=r"decoder/conv_in/bias has shape \(8,\), the model's has \(512,\)"):
    codec.frame_vae(config.video_tokenizer, config.pipeline.dataset, str(tmp_path))   # SD's architecture
  config.video_tokenizer.kind = "sdvae"
  with pytest.raises(ValueError, match=r"^video_tokenizer.kind: unknown 'sdvae'"):
    codec.video_tokenizer_kind(config.video_tokenizer)
