"""The one check every listed path passes before it can name a file on disk.

Listings (hub trees, object-store keys, ModelScope file lists) and revision names are
untrusted input from the network, and each becomes a path under an output directory. A path
is safe when it is relative and stays inside whatever directory it is joined to:

- not empty and at most ``MAX_PATH_LENGTH`` characters;
- no NUL byte or other control character, no backslash (a separator on Windows);
- not absolute (``/x``);
- no empty, ``.`` or ``..`` segment (``a//b``, ``a/./b``, ``../x``, ``a/``).

Percent signs are ordinary characters here: ``%2e%2e`` names a file called ``%2e%2e``,
because nothing decodes a listed path before it reaches the filesystem (URLs built from it
quote it again).
"""

from __future__ import annotations

MAX_PATH_LENGTH = 4096


def unsafe_path_reason(path: str) -> str | None:
    """Why ``path`` must not be used as a relative file path, or ``None`` if it is safe."""
    if not path or len(path) > MAX_PATH_LENGTH:
        return "empty or too long"
    if "\x00" in path:
        return "contains a NUL byte"
    if any(ord(c) < 0x20 or c == "\x7f" for c in path):
        return "contains a control character"
    if "\\" in path:
        return "contains a backslash"
    if path.startswith("/"):
        return "is absolute"
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        return "has an empty, '.' or '..' segment"
    return None
