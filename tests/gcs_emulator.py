"""gcp-storage-emulator as conftest's `gcs` runs it: in memory, bucket 'bkt', on the port given.

One fix over the PyPI server: its object reads (media and metadata) carry no `x-goog-generation` header (real
GCS always sends it), and tensorstore, which writes orbax's arrays, then reads an existing object's generation
as malformed ("Malformed StorageGeneration", seen on a second checkpoint in one process). The header is added
here.

  python tests/gcs_emulator.py PORT
"""

import sys

from gcp_storage_emulator import server
from gcp_storage_emulator.handlers import objects


def _with_generation(download):
  def handler(request, response, storage, *args, **kwargs):
    download(request, response, storage, *args, **kwargs)
    try:
      obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
    except Exception:  # noqa: BLE001 - not found: the handler has answered 404 already
      return
    response["x-goog-generation"] = str(obj["generation"])
    response["x-goog-metageneration"] = str(obj.get("metageneration", "1"))
  return handler


if __name__ == "__main__":
  wrapped = {objects.download: _with_generation(objects.download), objects.get: _with_generation(objects.get)}
  server.HANDLERS = tuple((pattern, {method: wrapped.get(h, h) for method, h in methods.items()})
                          for pattern, methods in server.HANDLERS)
  server.create_server("127.0.0.1", int(sys.argv[1]), in_memory=True, default_bucket="bkt").run()
