"""The token ``modelscope login`` saved, read without running the SDK.

modelscope 1.40 (``modelscope_hub.config.HubConfig.save_token``) stores it as the value of an
``m_session_id`` cookie inside a pickled ``requests`` cookie jar at
``$MODELSCOPE_HOME/credentials/cookies`` (default ``~/.modelscope``), mode 0600, with a
30-day expiry. Unpickling runs code named by the file, so it is read with an unpickler that
builds only plain objects for the three classes such a jar holds (``RequestsCookieJar``,
``DefaultCookiePolicy``, ``Cookie``) and refuses every other global; no SDK or ``requests``
import is needed. The file is used only if it is a regular file owned by this user and not
writable by group or others (someone else could have planted it); one of ours that group or
others may read is refused with one line (``chmod 600``), as ssh refuses such a key; an
expired cookie is no token, as in the SDK.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from damselfly.config.secret_files import READABLE_BY_OTHERS, SecretFileModeError

log = logging.getLogger("damselfly.backends")

COOKIE_NAME = "m_session_id"
_ALLOWED = frozenset(
    {
        ("requests.cookies", "RequestsCookieJar"),
        ("http.cookiejar", "DefaultCookiePolicy"),
        ("http.cookiejar", "Cookie"),
    }
)
_MAX_LENGTH = 1024 * 1024


class _Plain:
    """Stands in for every allowed class: pickle's BUILD fills ``__dict__``."""


class _CookieUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _Plain
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a cookie jar")


def credentials_path(env: Mapping[str, str]) -> Path:
    home = env.get("MODELSCOPE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".modelscope")
    return Path(home).expanduser() / "credentials" / "cookies"


def stored_ms_token(env: Mapping[str, str], now: float | None = None) -> str | None:
    """The saved login token, or ``None`` (no file, unsafe file, expired, unreadable)."""
    path = credentials_path(env)
    data = _safe_bytes(path)
    if data is None:
        return None
    try:
        jar = _CookieUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        log.debug("ignoring %s: %s", path, exc)
        return None
    return _session_cookie(jar, time.time() if now is None else now)


def _safe_bytes(path: Path) -> bytes | None:
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_LENGTH:
            return None
        if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            log.debug("ignoring %s: not owned by this user, or writable by others", path)
            return None
        if info.st_mode & READABLE_BY_OTHERS:  # ours, but the token is exposed: say so
            raise SecretFileModeError(str(path), stat.S_IMODE(info.st_mode))
        return path.read_bytes()
    except OSError:
        return None


def _session_cookie(jar: Any, now: float) -> str | None:
    domains = getattr(jar, "__dict__", {}).get("_cookies")
    if not isinstance(domains, dict):
        return None
    for paths in domains.values():
        for cookies in paths.values() if isinstance(paths, dict) else ():
            cookie = cookies.get(COOKIE_NAME) if isinstance(cookies, dict) else None
            fields = getattr(cookie, "__dict__", {})
            value, expires = fields.get("value"), fields.get("expires")
            if isinstance(expires, int | float) and expires <= now:
                return None
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None
