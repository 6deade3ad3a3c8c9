"""Objects that own one open file descriptor until they are closed (a build log's file, a work
directory's lease): closing twice is harmless, and each is a context manager that closes it."""

from __future__ import annotations

import os
from typing import TypeVar

_Owner = TypeVar("_Owner", bound="DescriptorOwner")


class DescriptorOwner:
    """Holds ``_fd`` (``-1`` once closed); a subclass releases what else it holds in ``_release``."""

    _fd: int = -1

    def _release(self) -> None:
        """What goes with the descriptor, done while it is still open (nothing by default)."""

    def close(self) -> None:
        if self._fd < 0:
            return
        self._release()
        os.close(self._fd)
        self._fd = -1

    def __enter__(self: _Owner) -> _Owner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
