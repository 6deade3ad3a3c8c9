"""nginx's demand datagrams where nginx runs apart (compose): ``wheelyard index`` with
``WHEELYARD_INDEX_SERVER=none`` takes them on ``WHEELYARD_INDEX_DEMAND_PORT``, counts them, and
reports them to the API with its token, one report per page and client a second."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import requests

from tests.conftest import wait_until
from tests.index_parts import demand_recorder
from tests.test_index import PASSWORD, USER, free_port


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_upload_endpoint_alone_reports_nginx_demand_datagrams_counted(tmp_path: Path) -> None:
    upload_port, demand_port = free_port(), _free_udp_port()
    agent = 'pip/25.0 {"implementation":{"name":"CPython"},"python":"3.12.1"}'
    with demand_recorder() as api:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELYARD_")}
        env.update(
            WHEELYARD_DATA_DIR=str(tmp_path / "data"),
            WHEELYARD_INDEX_SERVER="none",
            WHEELYARD_INDEX_UPLOAD_PORT=str(upload_port),
            WHEELYARD_INDEX_DEMAND_PORT=str(demand_port),
            WHEELYARD_INDEX_USER=USER,
            WHEELYARD_INDEX_PASSWORD=PASSWORD,
            WHEELYARD_API_URL=api.url,
            WHEELYARD_API_TOKEN="demand-token",
        )
        log = (tmp_path / "index.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "server.index"], env=env, stdout=log, stderr=log)
        try:

            def healthy() -> bool:
                assert process.poll() is None, (tmp_path / "index.log").read_text()
                try:
                    return requests.get(f"http://127.0.0.1:{upload_port}/health", timeout=2).text == "Ok"
                except (requests.ConnectionError, requests.Timeout):
                    return False

            wait_until(healthy, 60, "the upload endpoint")
            # What nginx sends for each request (RFC 3164 with nohostname; see server/index/nginx.py).
            datagram = f"<190>Dec  1 16:30:00 wheelyard_demand: /simple/lib/ {agent}".encode()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                for _ in range(30):
                    sender.sendto(datagram, ("127.0.0.1", demand_port))
                sender.sendto(b"<190>Dec  1 16:30:00 other_tag: /simple/lib/ x", ("127.0.0.1", demand_port))

            def counted() -> int:
                total = 0
                for path, ua in api.seen:
                    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
                    if query.get("path") == ["/simple/lib/"] and ua == agent:
                        total += int(query.get("count", ["1"])[0])
                return total

            wait_until(lambda: counted() == 30, 10, "30 requests reported")
            assert len(api.seen) < 30  # counted: fewer reports than requests
            assert api.tokens and set(api.tokens) == {"Bearer demand-token"}
        finally:
            process.terminate()
            process.wait(timeout=30)
            log.close()


def test_a_report_on_a_connection_the_api_closed_meanwhile_goes_on_a_new_one() -> None:
    # An API that closes each kept-alive connection after its answer, without saying so, as
    # uvicorn does with idle ones after 5 s: the second report finds its connection closed.
    import http.server
    import threading

    from server.index.demand import Sender

    got: list[str] = []

    class Closing(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - the handler's name
            got.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Closing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sender = Sender(f"http://127.0.0.1:{server.server_address[1]}", "token")
        sender.send("/simple/first/", "pip/24.0")
        wait_until(lambda: len(got) == 1, 10, "the first report")
        sender.send("/simple/second/", "pip/24.0")
        assert [urllib.parse.unquote(p.split("path=")[1].split("&")[0]) for p in got] == [
            "/simple/first/",
            "/simple/second/",
        ]
    finally:
        server.shutdown()
        server.server_close()
