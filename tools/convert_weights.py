r"""Public weights -> this project's params, as a safetensors file of '/'-joined param paths (config.init_from reads
it; avdit_jax/pretrained/files.py). Nothing is downloaded: pass the file you have.

  # DiT (either layout: facebookresearch/DiT's .pt, or diffusers' DiTTransformer2DModel .safetensors)
  python tools/convert_weights.py --kind=dit --input=DiT-XL-2-256x256.pt --variant=XL/2 --input_size=32 \
      --out=workdir/weights/dit_xl2_256.safetensors
  # the Stable Diffusion VAE (diffusers' AutoencoderKL, e.g. sd-vae-ft-ema)
  python tools/convert_weights.py --kind=sd_vae --input=sd-vae-ft-ema/diffusion_pytorch_model.safetensors \
      --out=workdir/weights/sd_vae_ft_ema.safetensors

Every tensor is mapped by name and checked against the target module's shapes: a wrong key or shape is refused,
naming it. A .pt file is read with torch.load(weights_only=True): a pickle that would run code is refused.
"""

from absl import app, flags

flags.DEFINE_enum("kind", None, ["dit", "sd_vae"], "What the input file holds.")
flags.DEFINE_string("input", None, "The public weights file (.safetensors, or .pt / .pth / .bin).")
flags.DEFINE_string("out", None, "The converted .safetensors file to write.")
flags.DEFINE_string("variant", "XL/2", "dit: the DiT variant (S/2 ... XL/8).")
flags.DEFINE_integer("input_size", 32, "dit: latent size (32 for the 256x256 models, 64 for 512x512).")
flags.DEFINE_integer("num_classes", 1000, "dit: class labels (0: unconditional).")
flags.DEFINE_integer("in_channels", 4, "dit: latent channels.")
flags.DEFINE_bool("learn_sigma", True, "dit: the output holds the variance too (2 x in_channels), as published.")
flags.DEFINE_list("vae_channels", ["128", "256", "512", "512"], "sd_vae: block_out_channels (SD's by default); "
                  "configs/quickstart.py:sd_vae's video_tokenizer.vae must say the same.")
flags.DEFINE_integer("vae_layers_per_block", 2, "sd_vae: resnets per encoder level.")
flags.DEFINE_integer("vae_groups", 32, "sd_vae: GroupNorm groups.")
flags.DEFINE_integer("vae_latent_channels", 4, "sd_vae: latent channels.")
flags.mark_flags_as_required(["kind", "input", "out"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from avdit_jax.pretrained import files
  if FLAGS.kind == "dit":
    from avdit_jax.models import dit
    from avdit_jax.pretrained import dit as convert
    out_channels = FLAGS.in_channels * (2 if FLAGS.learn_sigma else 1)
    model = dit.make_dit(FLAGS.variant, input_size=FLAGS.input_size, num_classes=FLAGS.num_classes,
                         in_channels=FLAGS.in_channels, out_channels=out_channels)
    flat = convert.convert(FLAGS.input, model)
  else:
    from avdit_jax.models import sd_vae
    from avdit_jax.pretrained import sd_vae as convert
    flat = convert.convert(FLAGS.input, sd_vae.AutoencoderKL(
        block_out_channels=tuple(int(c) for c in FLAGS.vae_channels), layers_per_block=FLAGS.vae_layers_per_block,
        groups=FLAGS.vae_groups, latent_channels=FLAGS.vae_latent_channels))
  files.write_params(FLAGS.out, flat, source=FLAGS.input)
  print(f"{sum(v.size for v in flat.values()):,} parameters in {len(flat)} arrays -> {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
