"""``python -m server.index``: the whole index (``serve.py``), or ``--upload-endpoint`` alone."""

from __future__ import annotations

import logging
import sys

from builder.config import load_settings
from builder.errors import WheelyardError
from builder.logs import configure_logging, log_error
from server.index.serve import serve
from server.index.upload import serve_upload_endpoint

log = logging.getLogger("server.index")


def main(argv: list[str]) -> int:
    settings = load_settings()
    configure_logging("index", settings.log_format)
    if argv == ["--upload-endpoint"]:
        serve_upload_endpoint(settings, settings.index_upload_host, settings.index_upload_port)
        return 0
    try:
        return serve(settings)
    except WheelyardError as exc:  # logged as every other line of the index, with its reference
        log_error(log, exc.message, exc.reference, exc.hint)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
