"""The data directory is private: it holds the SQLite database (password hashes, the
audit trail), the dev JWT secret, signing keys and media.

`private_data_dir` runs at the start of `agora serve`: the directory becomes 0700, the
files already in it that are ours (`agora.db*`, `jwt_secret`) 0600, and the process's
umask 077, so that everything it creates afterwards (the SQLite WAL and shared-memory
files, media, keys) is private from the start.
"""

from __future__ import annotations

import os
from pathlib import Path

from agora.core.settings import Settings

PRIVATE_UMASK = 0o077
_OURS = ("agora.db", "agora.db-wal", "agora.db-shm", "agora.db-journal", "jwt_secret")


def private_data_dir(settings: Settings) -> int:
    """Makes the data directory private; returns the umask it replaced."""
    previous = os.umask(PRIVATE_UMASK)
    data: Path = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    for name in _OURS:
        path = data / name
        if path.is_file():
            path.chmod(0o600)
    return previous
