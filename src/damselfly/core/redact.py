"""What of a URL may be shown or remembered: never a credential.

Used wherever a URL leaves the process's memory: the store's metadata, request summaries,
log lines. Written once here so every layer scrubs the same names.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from damselfly.core.ids import signature_params

# Names that often carry a secret: never stored, even where they might select content (the
# stored URL is for display; identity is the task id).
_SECRET_LOOKING_PARAMS = frozenset({"token", "api_key", "apikey", "key", "password", "secret"})


def scrub_url(url: str) -> str:
    """``url`` without userinfo, fragment or signature/token query parameters."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc.rpartition("@")[2]
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    dropped = signature_params(k for k, _ in pairs) | _SECRET_LOOKING_PARAMS
    kept = [(k, v) for k, v in pairs if k.lower() not in dropped]
    query = urlencode(kept) if len(kept) != len(pairs) else parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
