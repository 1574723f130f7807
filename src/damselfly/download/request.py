"""``DownloadRequest``: one dfget invocation as plain, validated data.

dfget turns its flags into a request (``cli/dfget_jobs.request_from_args``) and either runs it
itself or sends it, as JSON, to dfdaemon's local API; ``download/request_jobs.py`` turns a
request into download jobs on either side. Everything is already parsed and checked where the
user can be told (sizes, durations, headers), and paths are absolute: the daemon has another
working directory.

The fields are generic; what one scheme needs beyond them (a hub's token and revision, an
object store's credentials) is ``source``: the typed options of the URL's scheme, resolved by
that scheme's backend (``backends/options.py``) in the caller's process and checked on arrival
against the model the registry names for the scheme.

``env`` carries only the environment variables job building reads (``HOME``/``XDG_CACHE_HOME``
for default cache directories, and the names each scheme's options spec declares);
``request_checks.job_env`` filters a full environment down to those. Secrets (``SecretStr``),
headers and ``env`` never appear in ``repr``; the URL appears without userinfo and signatures
(``redacted_url``).

``from_json`` refuses anything malformed with a ``ProtocolError`` (pydantic, strict: not an
object, an unknown field, a value of the wrong type: ``true`` is not an integer); values that
are well-typed but wrong (a relative path, a header with a line break, an environment variable
outside the allowed names) are ``UsageError``s, also for requests built in Python.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from damselfly.backends.option_specs import options_catalog, scheme_of
from damselfly.backends.options import SourceOptions
from damselfly.core.errors import ProtocolError, UsageError
from damselfly.core.redact import scrub_url
from damselfly.core.urls import SourceUrl
from damselfly.download.request_checks import request_problems, validation_message

_HIDDEN_FIELDS = frozenset({"url", "env", "headers"})


class DownloadRequest(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    url: str
    output: str | None = None  # absolute; None only for a source cache at its default place
    recursive: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    digest: str | None = None  # alg:hex, checked when the job is built
    piece_length: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    tag: str = ""
    application: str = ""
    filtered_query_params: tuple[str, ...] = ()
    overwrite: bool = False
    force_hard_link: bool = False
    hard_link: bool = True  # False: --no-hard-link, the output is always a copy
    content_for_task_id: str | None = None
    max_files: int | None = None
    concurrent_files: int = 5
    insecure: bool = False
    timeout: float | None = None  # seconds for the whole download; None: no limit
    origin_retries: int = 4
    concurrent_pieces: int = 8
    back_to_source: bool = True  # False: --disable-back-to-source
    source: SerializeAsAny[SourceOptions] | None = None  # the URL scheme's own options
    env: dict[str, str] = {}

    @field_validator("source", mode="before")
    @classmethod
    def _scheme_options(cls, value: Any, info: ValidationInfo) -> Any:
        """Validate ``source`` with the model the registry names for the URL's scheme."""
        if value is None:
            return None
        scheme = scheme_of(str(info.data.get("url", "")))
        spec = options_catalog().spec_for(scheme)
        if spec is None:
            raise ValueError(f"{scheme}:// takes no source options")
        if isinstance(value, SourceOptions) and not isinstance(value, spec.model):
            raise ValueError(f"{scheme}:// takes {spec.model.__name__}")
        return value if isinstance(value, SourceOptions) else spec.model.model_validate(value)

    def model_post_init(self, context: Any) -> None:
        for problem in request_problems(self):
            raise UsageError(f"download request: {problem}")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield "url", self.redacted_url()
        for name, value in super().__repr_args__():
            if name not in _HIDDEN_FIELDS:
                yield name, value

    @functools.cached_property
    def source_url(self) -> SourceUrl:
        """The URL, parsed once per request."""
        return options_catalog().parse_url(self.url)

    @functools.cached_property
    def resolved_source(self) -> SourceOptions | None:
        """``source``; for a request built without it (in Python, not by dfget), the scheme's
        defaults resolved once from the request's ``env`` (no flags)."""
        if self.source is not None:
            return self.source
        return options_catalog().resolve(self.url, {}, self.env)

    def redacted_url(self) -> str:
        """The URL without userinfo or signature/token query parameters: safe to log."""
        return scrub_url(self.url)

    def to_json(self) -> str:
        # ``hard_link`` only when it says something: a daemon older than the field accepts it
        return self.model_dump_json(exclude={"hard_link"} if self.hard_link else None)

    @classmethod
    def from_json(cls, text: str | bytes) -> DownloadRequest:
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise ProtocolError(f"download request: {validation_message(exc)}") from None


def require_sent_source(request: DownloadRequest) -> None:
    """Refuse a request that reached a daemon without its scheme's options (``source``).

    dfget, ``damselfly download`` and preheat resolve them in the caller's process (token,
    revision, endpoint). Resolving them on arrival (``resolved_source``) would read the
    daemon user's own logins (``~/.cache/huggingface/token``, the saved ModelScope login, a
    token file the request's ``env`` points at) for a download someone else asked for."""
    scheme = scheme_of(request.url)
    if request.source is None and options_catalog().spec_for(scheme) is not None:
        raise UsageError(
            f"download request: {scheme}:// came without its source options; the caller "
            "resolves them (token, revision), the daemon never uses its own logins"
        )


def uses_hub_cache(request: DownloadRequest) -> bool:
    """Whether the download goes into its source's cache (``--hf-cache`` with an hf:// URL,
    ``--ms-cache`` with modelscope://; a cache flag is ignored for other schemes, so
    ``DFGET_HF_CACHE=1`` can stay set)."""
    return request.source is not None and request.source.cache_requested
