"""The one path layer: every file the package reads or writes may be local or remote (gs://, s3://, ...).

Paths are `etils.epath.Path` (what orbax uses): gs:// goes through gcsfs, which honours
STORAGE_EMULATOR_HOST (tests/conftest.py's `gcs` fixture runs a local GCS emulator). Three things need help:
  - objects cannot be appended to: `append_text` rewrites a remote file (GCS replaces an object atomically);
  - ArrayRecord (latent shards) and PyAV (mp4) open local files only: `local_copy` stages a remote file for
    reading, `staged_dir` collects written files in a local directory and uploads them on exit;
  - gcsfs caches directory listings, which hides files other writers (tensorstore, another process) add later:
    its listing cache is off.
`wait_for` is every wait for a file another process writes: it gives up after a timeout, naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator

import fsspec
from etils import epath

# Listings must see files written by other processes and by tensorstore (orbax's array storage).
for _protocol in ("gs", "gcs"):
  fsspec.config.conf.setdefault(_protocol, {}).setdefault("use_listings_cache", False)

PathLike = str | os.PathLike
DEFAULT_WAIT_S = 3600.0


def path(*parts: PathLike) -> epath.Path:
  return epath.Path(*parts)


def is_remote(p: PathLike) -> bool:
  return "://" in os.fspath(p)


def join(base: PathLike, *parts: str) -> str:
  """base/parts as a string (for config fields and log lines); never os.path.abspath, which breaks gs://."""
  return os.fspath(epath.Path(base).joinpath(*parts))


def absolute(p: PathLike) -> str:
  """A local path made absolute (orbax wants one); a remote one as it is."""
  return os.fspath(p) if is_remote(p) else os.path.abspath(os.fspath(p))


def append_text(p: PathLike, text: str) -> None:
  """Appends to a local file; rewrites a remote one with the text added (objects have no append)."""
  target = epath.Path(p)
  if not is_remote(p):
    with target.open("a") as f:
      f.write(text)
    return
  target.write_text((target.read_text() if target.exists() else "") + text)


def wait_for(ready: Callable[[], bool], what: str | Callable[[], str], *, timeout_s: float = DEFAULT_WAIT_S,
             poll_s: float = 1.0) -> None:
  """Polls `ready()` until it holds; after timeout_s a TimeoutError naming `what` (a string, or a function
  that says what is still missing then): a peer may have died."""
  deadline = time.monotonic() + timeout_s
  while not ready():
    if time.monotonic() > deadline:
      raise TimeoutError(f"waited {timeout_s:g}s for {what() if callable(what) else what}; the process that "
                         "writes it may have died (its log says why).")
    time.sleep(poll_s)


_CACHE = os.path.join(tempfile.gettempdir(), f"avdit_jax_remote_cache_{os.getuid()}")


def local_copy(p: PathLike) -> str:
  """A local file with p's contents: p itself when local, else a copy in this machine's temp directory
  (keyed by the path and the object's size, so a rewritten object is fetched again)."""
  if not is_remote(p):
    return os.fspath(p)
  source = epath.Path(p)
  size = source.stat().length
  key = hashlib.sha256(f"{os.fspath(p)}:{size}".encode()).hexdigest()[:16]
  local = os.path.join(_CACHE, key, source.name)
  if not os.path.exists(local):
    os.makedirs(os.path.dirname(local), exist_ok=True)
    with source.open("rb") as f, open(local + ".part", "wb") as out:
      shutil.copyfileobj(f, out, 1 << 22)
    os.replace(local + ".part", local)
  return local


@contextlib.contextmanager
def staged_dir(p: PathLike) -> Iterator[str]:
  """A local directory to write into for a destination p: p itself when local, else a temporary directory whose
  files are uploaded to p on a clean exit (libraries that open only local files write there)."""
  if not is_remote(p):
    os.makedirs(os.fspath(p), exist_ok=True)
    yield os.fspath(p)
    return
  with tempfile.TemporaryDirectory() as local:
    yield local
    upload(local, p)


def upload(local_dir: str, p: PathLike) -> None:
  """Copies every file under local_dir to the same relative path under p."""
  target = epath.Path(p)
  for root, _, names in os.walk(local_dir):
    for name in names:
      src = os.path.join(root, name)
      dst = target / os.path.relpath(src, local_dir)
      dst.parent.mkdir(parents=True, exist_ok=True)
      with open(src, "rb") as f, dst.open("wb") as out:
        shutil.copyfileobj(f, out, 1 << 22)
