"""The URL schemes damselfly knows, by family: plain data, cheap to import (dfget's flags need
them at every start; ``core/urls.py`` holds the grammar)."""

from __future__ import annotations

OBJECT_STORE_SCHEMES = frozenset({"s3", "gs", "abs", "oss", "obs", "cos"})
HUB_SCHEMES = frozenset({"hf", "modelscope"})
SUPPORTED_SCHEMES = frozenset(
    {"http", "https", "file", "hdfs"} | OBJECT_STORE_SCHEMES | HUB_SCHEMES
)
