r"""AV-DiT (seed 002) on the Gaussian toy: a frozen image DiT shared by audio and video, only adapters train.

  python -m avdit_jax.main --config=configs/av_dit.py --workdir=workdir/av_dit

The model (avdit_jax/models/av_dit.py) keeps the image DiT's param names, so its backbone loads from a converted
DiT file (tools/convert_weights.py) or its params by --config.init_from=PATH (a partial load: the adapters keep their
initial values); --config.train.trainable=adapters (the default here) trains only what is not the DiT. Everything
else (data, MoNL, sampling, evaluation) is configs/gaussian.py's.

Variants: `test` shrinks it to seconds for the test suite.
"""

from avdit_jax import factory


def get_config(arg: str = ""):
  if arg not in ("", "test"):
    raise ValueError(f"configs/av_dit.py: unknown variant {arg!r}; expected '' or 'test'.")
  c = factory.load_config("gaussian.py" + (":test" if arg else ""), relative_to=__file__)
  # variant: the image DiT by its paper name (models/dit.VARIANTS); depth / width / num_heads shrink it.
  # num_classes, freq_shift, learn_sigma: the DiT's, as its converted file has them (0: unconditional).
  # adapter_dim: the audio adapters' bottleneck; temporal_dim: the width temporal attention runs in (0: the model's).
  c.model = dict(kind="av_dit", variant="S/2", depth=2, width=64, num_heads=4, audio_patch=2, num_classes=0,
                 freq_shift=0.0, learn_sigma=False, adapter_dim=16, temporal_dim=16, dtype="float32")
  c.train.trainable = "adapters"
  if arg == "test":
    c.model.update(width=32, num_heads=2, adapter_dim=8)
  return c
