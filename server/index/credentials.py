"""The upload endpoint's credentials: the upload user's htpasswd file, and the check of each request.

The upload password is ``settings.index_password`` or one generated on first use and kept (0600)
in the data directory; the htpasswd file keeps its strong hash (sha512-crypt). The read password,
where set, is compared in constant time, never through a password KDF.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from passlib.apache import HtpasswdFile
from pypiserver.bottle_wrapper import request

from builder.config import Settings
from builder.errors import ConfigurationError

HTPASSWD_SCHEME = "sha512_crypt"


def ensure_upload_credentials(settings: Settings) -> tuple[str, str]:
    """The upload user and password, with the index's htpasswd file written for them.

    The password is ``settings.index_password``; if none is configured, one is generated
    on first use and kept (mode 0600) in ``data_dir/index-password``.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    user = settings.index_user
    if not user or ":" in user:
        raise ConfigurationError(
            f"index user {user!r} cannot be used", "set WHEELYARD_INDEX_USER to a name without ':'"
        )
    password = settings.index_password or _stored_password(settings.data_dir / "index-password")
    _write_htpasswd(settings.data_dir / "htpasswd", user, password)
    return user, password


def _stored_password(path: Path) -> str:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        password = path.read_text().strip()
        if not password:
            raise ConfigurationError(f"{path} is empty", "delete it to generate a new upload password") from None
        return password
    password = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return password


def _write_htpasswd(path: Path, user: str, password: str) -> None:
    if path.exists():
        try:
            current = HtpasswdFile(str(path))
            if current.users() == [user] and current.check_password(user, password):
                return
        except ValueError:
            pass  # unreadable: written anew below
    htpasswd = HtpasswdFile(new=True, default_scheme=HTPASSWD_SCHEME)
    htpasswd.set_password(user, password)
    _atomic_write(path, htpasswd.to_string(), mode=0o600)


def _atomic_write(path: Path, data: bytes, *, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_auther(htpasswd_path: Path, read_password: str | None) -> Callable[[str, str], bool]:
    """pypiserver's credential check: upload credentials for everything, the read
    password (with any user name) for everything but uploads.

    The htpasswd file keeps the strong hash (sha512-crypt, ~0.2 s a check). Once a user's
    password has passed it, its sha256 is kept in memory and later requests are checked by a
    constant-time compare of that: uploads stay cheap, and a wrong password still meets the
    strong hash. A changed htpasswd file forgets what was kept."""
    htpasswd = HtpasswdFile(str(htpasswd_path))
    lock = threading.Lock()
    verified: dict[str, bytes] = {}

    def auther(user: str, password: str) -> bool:
        if (
            read_password is not None
            and not _is_update_request()
            and hmac.compare_digest(password.encode(), read_password.encode())
        ):
            return True
        digest = hashlib.sha256(password.encode()).digest()
        with lock:
            if htpasswd.load_if_changed():
                verified.clear()
            known = verified.get(user)
        if known is not None and hmac.compare_digest(digest, known):
            return True
        with lock:
            ok = bool(htpasswd.check_password(user, password))
            if ok:
                verified[user] = digest
        return ok

    return auther


def _is_update_request() -> bool:
    # pypiserver's "update" actions (file_upload, remove_pkg, ...) are POSTs to the root.
    return bool(request.method == "POST" and request.path in ("", "/"))
