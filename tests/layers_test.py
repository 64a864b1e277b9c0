"""The package's layers (pyproject.toml, [tool.importlinter]): imports run downward only."""

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _lint_imports(root: pathlib.Path) -> subprocess.CompletedProcess:
  # The checkout at `root` comes first on the path, so its copy of the package is the one analysed.
  return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                         "sys.exit(lint_imports_command())", "--config", str(root / "pyproject.toml"), "--no-cache"],
                        cwd=root, env={"PYTHONPATH": str(root), "PATH": ""}, capture_output=True, text=True)


def test_imports_run_downward():
  out = _lint_imports(ROOT)
  assert out.returncode == 0, out.stdout + out.stderr


def test_an_upward_import_breaks_the_contract(tmp_path):
  shutil.copytree(ROOT / "avdit_jax", tmp_path / "avdit_jax", ignore=shutil.ignore_patterns("__pycache__"))
  shutil.copy(ROOT / "pyproject.toml", tmp_path)
  monl = tmp_path / "avdit_jax" / "core" / "monl.py"
  monl.write_text(monl.read_text() + "\nfrom avdit_jax.train import trainer  # noqa: E402,F401\n")
  out = _lint_imports(tmp_path)
  assert out.returncode != 0
  assert "avdit_jax.core.monl -> avdit_jax.train.trainer" in out.stdout, out.stdout
