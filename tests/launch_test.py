"""Every command line the docs show (launch/, README.md, the configs' and tools' docstrings) loads its config and
overrides with the real loader (ml_collections config_flags), so an example cannot go stale."""

import ast
import glob
import os
import re
import subprocess
import sys

import pytest
from absl import flags
import ml_collections
from ml_collections import config_flags

from avdit_jax import factory
from train_test import ROOT

SPEC = re.compile(r"(?:--config=|\bCONFIG=|tpu_vm_pod\.sh\s+\S+\s+\S+\s+\S+\s+)([^\s`\"'\]]+)")
OVERRIDE = re.compile(r"--config\.([A-Za-z_][\w.]*)=('[^']*'|\"[^\"]*\"|[^\s`\"',\]]+)")
PLACEHOLDER_SPECS = ("...", "$")     # `--config=...`, `$CONFIG`, `configs/X.py`
# Where a line shows overrides without a config file, the config it means.
DEFAULT_SPEC = {"README.md": "configs/gaussian.py", "tools/table1.py": "configs/gaussian.py"}


def _units(rel: str) -> list[str]:
  """The pieces of a file that can hold a command: its lines (docstrings for .py), with backslash continuations
  joined; in markdown also inline code spans, which may wrap."""
  text = open(os.path.join(ROOT, rel)).read()
  if rel.endswith(".py"):
    text = ast.get_docstring(ast.parse(text)) or ""
  text = re.sub(r"\\\n\s*", " ", text)
  units = text.splitlines()
  if rel.endswith(".md"):
    units += [m.replace("\n", " ") for m in re.findall(r"(?<!`)`([^`]+)`(?!`)", text)]
  return units


def _value(raw: str) -> str:
  raw = raw.strip("'\"")
  while raw and raw[-1] in ".;:" or (raw.endswith(")") and raw.count(")") > raw.count("(")):
    raw = raw[:-1]
  return raw


def shown_commands() -> list[tuple[str, str, list[str]]]:
  """(file, config spec, ['a.b=v', ...]) for every unit that names a config file or overrides a field."""
  files = ["README.md"] + [f for pattern in ("launch/*", "configs/*.py", "tools/*.py")
                           for f in sorted(glob.glob(pattern, root_dir=ROOT))]
  out = []
  for rel in files:
    for unit in _units(rel):
      specs = SPEC.findall(unit)
      overrides = [f"{name}={_value(v)}" for name, v in OVERRIDE.findall(unit)
                   if name != "a.b" and not unit[unit.index(f"--config.{name}") - 1:].startswith("[")]
      spec = specs[0].rstrip(",") if specs else (DEFAULT_SPEC.get(rel, rel if rel.startswith("configs/") else None)
                                     if overrides else None)
      if (spec is None or any(p in spec for p in PLACEHOLDER_SPECS) or not spec.split(":")[0].endswith(".py")
          or re.fullmatch(r"configs/[A-Z]\.py", spec)):
        continue
      out.append((rel, spec, overrides))
  return out


def _load(spec: str, overrides: list[str]):
  """What `python -m avdit_jax.main --config=spec --config.a.b=v ...` parses, in a fresh flag registry."""
  argv = ["prog", f"--config={spec}", *(f"--config.{o}" for o in overrides)]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True, sys_argv=argv)
  values(argv)
  return values.config


COMMANDS = shown_commands()


def test_the_docs_show_the_recipes_this_test_checks():
  files = {rel for rel, _, _ in COMMANDS}
  assert {"README.md", "launch/tpu_vm_pod.sh", "launch/gke_jobset.yaml", "launch/local.py"} <= files, files
  assert ("launch/tpu_vm_pod.sh", "configs/quickstart.py", ["avdit.model.variant=B"]) in COMMANDS
  assert sum(len(o) for _, _, o in COMMANDS) >= 10


@pytest.mark.parametrize("rel,spec,overrides", COMMANDS, ids=[f"{r}:{s}:{len(o)}" for r, s, o in COMMANDS])
def test_every_shown_command_line_loads(rel, spec, overrides, monkeypatch):
  monkeypatch.chdir(ROOT)
  factory.check_command_line([f"--config={spec}", *(f"--config.{o}" for o in overrides)])
  config = _load(spec, overrides)
  for override in overrides:                 # and the value landed where the line says
    node = config
    for key in override.split("=", 1)[0].split("."):
      node = node[key]


def test_a_stale_recipe_is_refused_in_one_line():
  # The recipe launch/tpu_vm_pod.sh used to show: configs/quickstart.py has no top-level `model`.
  with pytest.raises(ValueError, match=r"^--config.model.variant: configs/quickstart.py has no 'model' at the top "
                                       r"level \(the keys there are \['audio_tokenizer', 'avdit', .*\]\); 'model' "
                                       r"exists at config.audio_tokenizer.model, config.avdit.model"):
    factory.check_command_line(["--config=configs/quickstart.py", "--config.model.variant=B"])
  out = subprocess.run([sys.executable, "-m", "avdit_jax.main", "--config=configs/gaussian.py", "--workdir=unused",
                        "--config.train.log_evry=5"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, AVDIT_MALLOC="system"))
  assert out.returncode == 1
  assert out.stderr.strip().splitlines() == [
      "error: --config.train.log_evry: configs/gaussian.py has no 'log_evry' at config.train (the keys there are "
      "['log_every', 'lora', 'num_steps', 'peak_flops_per_device', 'trainable']). Did you mean \"log_every\"?"
  ], out.stderr


def _guidance_paths(node, prefix=()):
  for key in node.keys():
    if isinstance(node[key], ml_collections.ConfigDict):
      yield from _guidance_paths(node[key], prefix + (key,))
    elif prefix[-1:] == ("sampling",) and key == "guidance":
      yield ".".join(prefix + (key,))


GUIDED = [(f, p) for f in sorted(glob.glob("configs/*.py", root_dir=ROOT))
          for p in _guidance_paths(factory.load_config(os.path.join(ROOT, f)))]


def test_every_config_has_a_guidance_the_command_line_can_set():
  assert {f for f, _ in GUIDED} >= {"configs/gaussian.py", "configs/paper.py", "configs/quickstart.py",
                                    "configs/finetune_lora.py", "configs/av_dit.py"}, GUIDED


@pytest.mark.parametrize("rel,path", GUIDED, ids=[f"{f}:{p}" for f, p in GUIDED])
def test_guidance_takes_a_number_or_a_pair_on_the_command_line(rel, path, monkeypatch):
  monkeypatch.chdir(ROOT)
  for text, want in (("(3.0, 7.0)", (3.0, 7.0)), ("4.5", 4.5), ("2", 2)):
    factory.check_command_line([f"--config={rel}", f"--config.{path}={text}"])
    node = _load(rel, [f"{path}={text}"])
    for key in path.split("."):
      node = node[key]
    assert node == want, (text, node)


@pytest.mark.parametrize("text", ["abc", "(1.0, 2.0, 3.0)", "-1", "(3.0, -7.0)", "[3.0]"])
def test_a_bad_guidance_is_refused_in_one_line(text):
  with pytest.raises(ValueError, match=rf"^--config.avdit.sampling.guidance={re.escape(text)}: expected a number "
                                       r">= 0 or an \(audio, video\) pair of them, e\.g\. 3\.0 or '\(3\.0, 7\.0\)'\.$"):
    factory.check_command_line([f"--config={ROOT}/configs/quickstart.py", f"--config.avdit.sampling.guidance={text}"])


def test_a_guidance_held_as_a_plain_number_is_named(tmp_path):
  # A user's config that writes guidance=3.0 itself: config_flags would refuse the pair with a traceback.
  path = tmp_path / "mine.py"
  path.write_text("import ml_collections\n\ndef get_config():\n  return ml_collections.ConfigDict("
                  "dict(sampling=dict(guidance=3.0)))\n")
  with pytest.raises(ValueError, match=r"^--config.sampling.guidance: .*mine.py holds it as a plain float, which the "
                                       r"command line cannot change to a pair; make it factory.guidance_field\(...\)"):
    factory.check_command_line([f"--config={path}", "--config.sampling.guidance=(3.0, 7.0)"])


@pytest.mark.parametrize("tool, args", [("tools/table1.py", ["--workdir=unused"]),
                                        ("tools/aot_compile.py", ["--config=configs/gaussian.py"]),
                                        ("tools/make_synthetic_latents.py", ["--config=configs/gaussian.py",
                                                                             "--out=unused"])])
def test_every_tool_with_a_config_flag_refuses_a_bad_override_in_one_line(tool, args):
  # table1's --config has a default (configs/gaussian.py): its overrides are checked against that file.
  out = subprocess.run([sys.executable, tool, *args, "--config.train.log_evry=5"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env=dict(os.environ, AVDIT_MALLOC="system"))
  assert out.returncode == 1
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: --config.train.log_evry: ") and "log_every" in lines[0], \
      out.stderr
