"""Reports of project-page requests to the API (``GET /api/index-requests?path=...``).

The embedded index server hands each request for ``/simple/<name>/`` to ``report``, which
only puts it on a bounded queue (dropped when full) and returns: a thread sends the
reports, each with the client's own ``User-Agent``, with short timeouts and ignoring the
answer. So a slow or absent API never delays or fails a client's request.
(nginx does the same with ``mirror``; see ``server/index_nginx.py``.)
"""

from __future__ import annotations

import http.client
import logging
import queue
import threading
from urllib.parse import quote, urlsplit

log = logging.getLogger(__name__)

QUEUE_SIZE = 4096
TIMEOUT_SECONDS = 2.0


class DemandReporter:
    def __init__(self, api_url: str, *, queue_size: int = QUEUE_SIZE) -> None:
        parts = urlsplit(api_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.https = parts.scheme == "https"
        self.prefix = parts.path.rstrip("/")
        self.queue: queue.Queue[tuple[str, bytes | None]] = queue.Queue(maxsize=queue_size)
        self.dropped = 0
        self.thread = threading.Thread(target=self._send_all, name="demand-reporter", daemon=True)
        self.thread.start()

    def report(self, path: str, user_agent: bytes | None) -> None:
        try:
            self.queue.put_nowait((path, user_agent))
        except queue.Full:
            self.dropped += 1

    def _connect(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        return kind(self.host, self.port, timeout=TIMEOUT_SECONDS)

    def _send_all(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while True:
            path, user_agent = self.queue.get()
            url = f"{self.prefix}/api/index-requests?path={quote(path, safe='')}"
            headers = {"User-Agent": user_agent.decode("latin-1")} if user_agent else {}
            try:
                conn = conn or self._connect()
                conn.request("GET", url, headers=headers)
                conn.getresponse().read()
            except (OSError, http.client.HTTPException) as exc:
                log.debug("demand report not sent: %s", exc)
                if conn is not None:
                    conn.close()
                conn = None
