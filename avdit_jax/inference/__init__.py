"""A trained run in use: restoring params for sampling, the tokenizers as a codec, media in and out.
Imports train and the layers below it."""
