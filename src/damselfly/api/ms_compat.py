"""The modelscope SDK's exception classes for damselfly's errors (as ``hf_compat.py`` does for
huggingface_hub): the SDK (1.40) raises ``requests.exceptions.HTTPError`` for any refused
request (missing repo, revision or file; no access) and ``modelscope_hub.errors.CacheNotFound``
when ``local_files_only`` finds nothing, ``modelscope_hub.errors.NetworkError`` when the hub
cannot be reached. With those packages installed, damselfly's error is
also an instance of that class (``response.status_code`` set); otherwise it is unchanged."""

from __future__ import annotations

import importlib
from typing import Any

from damselfly.api.hf_compat import CacheMissError, clone_as
from damselfly.core.errors import (
    DamselflyError,
    SourceStatusError,
    SourceTimeoutError,
    SourceUnreachableError,
)


def as_ms_error(error: DamselflyError) -> BaseException:
    if isinstance(error, CacheMissError):
        theirs = _class("modelscope_hub.errors", "CacheNotFound")
        return error if theirs is None else clone_as(error, theirs)
    if isinstance(error, SourceUnreachableError | SourceTimeoutError):
        theirs = _class("modelscope_hub.errors", "NetworkError")
        return error if theirs is None else clone_as(error, theirs)
    if isinstance(error, SourceStatusError):
        theirs = _class("requests.exceptions", "HTTPError")
        if theirs is None:
            return error
        clone = clone_as(error, theirs)
        _add_response(clone, error)
        return clone
    return error


def _class(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def _add_response(clone: Any, error: SourceStatusError) -> None:
    response = importlib.import_module("requests").Response()
    response.status_code = error.status
    clone.response = response
    clone.request = None
