"""``wheelyard index``: the static pages in front, pypiserver (the upload endpoint) behind.

At start every page is rebuilt from the files (``IndexSite.rebuild``: quick, hashes are
kept), then pypiserver starts on ``index_upload_host:index_upload_port`` as a child process,
then the static server on ``index_host:index_port``: nginx when ``index_server`` is ``nginx``
(or ``auto`` and nginx is on ``PATH``), the embedded server otherwise. Either passes uploads
to pypiserver. If either process ends, the other is stopped and the command exits non-zero,
for a supervisor to restart it. ``index_server = none`` runs the upload endpoint alone
(compose runs nginx in a container of its own).
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from builder.config import Settings
from builder.errors import ConfigurationError, IndexStartFailed
from server.index.site import IndexSite

log = logging.getLogger(__name__)
MODES = ("auto", "nginx", "embedded", "none")


def server_mode(settings: Settings) -> str:
    mode = settings.index_server
    if mode not in MODES:
        raise ConfigurationError(
            f"WHEELYARD_INDEX_SERVER={mode!r} is not a way to serve the index", f"use one of {', '.join(MODES)}"
        )
    if mode == "auto":
        return "nginx" if shutil.which("nginx") else "embedded"
    if mode == "nginx" and not shutil.which("nginx"):
        raise ConfigurationError("WHEELYARD_INDEX_SERVER=nginx, but there is no nginx on PATH", "install nginx")
    return mode


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _start_upload_endpoint(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ, WHEELYARD_INDEX_UPLOAD_PORT=str(port), WHEELYARD_INDEX_UPLOAD_HOST=settings.index_upload_host
    )
    env["WHEELYARD_DATA_DIR"] = str(settings.data_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.index", "--upload-endpoint"], env=env, preexec_fn=_die_with_parent
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise IndexStartFailed(
                f"the upload endpoint exited with status {proc.returncode} while starting", "its output above says why"
            )
        try:
            socket.create_connection((settings.index_upload_host, port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise IndexStartFailed("the upload endpoint did not start within 60 s")


def _nginx_htpasswd(settings: Settings, path: Path) -> str | None:
    """The read password for nginx, as a fast salted hash ({SSHA}), for the user names
    `reader` and the index user."""
    if not settings.index_read_password:
        return None
    salt = os.urandom(8)
    digest = hashlib.sha1(settings.index_read_password.encode() + salt).digest()  # noqa: S324 - nginx's {SSHA}
    value = "{SSHA}" + base64.b64encode(digest + salt).decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        for user in sorted({"reader", settings.index_user}):
            fh.write(f"{user}:{value}\n")
    return str(path)


def _run_nginx(settings: Settings, upload_port: int, backend: subprocess.Popen[bytes]) -> int:
    from server.index.demand import DemandListener
    from server.index.nginx import local_site, render

    run_dir = settings.data_dir / "run" / "nginx"
    run_dir.mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    listener = DemandListener(settings.api_url, settings.api_token).start() if settings.api_url else None
    conf = local_site(
        listen=f"{settings.index_host}:{settings.index_port}",
        site=str(IndexSite(settings.data_dir).root),
        upload=f"{settings.index_upload_host}:{upload_port}",
        demand=f"127.0.0.1:{listener.port}" if listener else None,
        run_dir=str(run_dir),
        logs=str(settings.log_dir),
        htpasswd=_nginx_htpasswd(settings, run_dir / "htpasswd"),
    )
    path = run_dir / "nginx.conf"
    path.write_text(render(conf))
    nginx = shutil.which("nginx") or "nginx"
    try:
        proc = subprocess.Popen([nginx, "-c", str(path), "-e", conf.error_log], preexec_fn=_die_with_parent)
        log.info("wheelyard index: nginx (%s) serves %s from %s", nginx, settings.simple_url, conf.site)
        return _supervise({"nginx": proc, "upload endpoint": backend})
    finally:
        if listener is not None:
            listener.close()


def _supervise(children: dict[str, subprocess.Popen[bytes]]) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    status = 0
    while not stop.wait(0.2):
        ended = [name for name, proc in children.items() if proc.poll() is not None]
        if ended:
            log.error("wheelyard index: the %s exited; stopping", ended[0])
            status = 1
            break
    for proc in children.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in children.values():
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return status


def _run_embedded(settings: Settings, upload_port: int, backend: subprocess.Popen[bytes], sock: socket.socket) -> int:
    from server.index.embedded import FrontConfig, processes_for, run_front

    settings.log_dir.mkdir(parents=True, exist_ok=True)
    config = FrontConfig(
        site=IndexSite(settings.data_dir).root,
        upload_host=settings.index_upload_host,
        upload_port=upload_port,
        read_password=settings.index_read_password or None,
        api_url=settings.api_url,
        api_token=settings.api_token,
        access_log=settings.log_dir / "index-access.log",
    )
    processes = processes_for()
    shown = (settings.simple_url, config.site, processes)
    log.info("wheelyard index: the embedded server serves %s from %s (%d processes)", *shown)
    try:
        status = run_front(config, sock, processes, alive=lambda: backend.poll() is None)
    finally:
        if backend.poll() is None:
            backend.terminate()
            backend.wait(timeout=20)
        else:
            log.error("wheelyard index: the upload endpoint exited; stopping")
    return 1 if status or backend.returncode not in (None, 0, -signal.SIGTERM) else 0


def _listen(settings: Settings) -> socket.socket:
    from server.index.embedded import listen

    return listen(settings.index_host, settings.index_port)


def serve(settings: Settings) -> int:
    mode = server_mode(settings)
    report = IndexSite(settings.data_dir).rebuild()
    log.info("wheelyard index: pages of %d projects (%d files) written", report.projects, report.files)
    if mode == "none":
        from server.index.demand import DemandListener
        from server.index.upload import serve_upload_endpoint

        # nginx runs apart (compose): its demand datagrams come here, on the upload endpoint's address.
        port, host = settings.index_demand_port, settings.index_upload_host
        listener = DemandListener(settings.api_url, settings.api_token, host, port) if port else None
        try:
            if listener is not None:
                listener.start()
            serve_upload_endpoint(settings, settings.index_upload_host, settings.index_upload_port or 8081)
        finally:
            if listener is not None:
                listener.close()
        return 0
    # The embedded server's address is taken before anything starts: a port in use is refused at once.
    sock = None if mode == "nginx" else _listen(settings)
    port = settings.index_upload_port or _free_port(settings.index_upload_host)
    backend = _start_upload_endpoint(settings, port)
    if sock is None:
        return _run_nginx(settings, port, backend)
    return _run_embedded(settings, port, backend, sock)
