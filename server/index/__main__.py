"""``python -m server.index``: the whole index (``serve.py``), or ``--upload-endpoint`` alone."""

from __future__ import annotations

import logging
import sys

from builder.config import load_settings
from server.index.serve import serve
from server.index.upload import serve_upload_endpoint


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = load_settings()
    if argv == ["--upload-endpoint"]:
        serve_upload_endpoint(settings, settings.index_upload_host, settings.index_upload_port)
        return 0
    return serve(settings)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
