"""Where a hub download lands: the choice among ``hub_layouts``' layouts for one request.

Kept next to the layouts (the one part of ``download/`` that knows the hubs' cache formats)
so that job building (``request_jobs.py``) names no scheme: a hub's cache (its dir: the
output, else the hub's default), for ``hf:// -r -O dir`` a plain dir with huggingface_hub's
metadata, else ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from damselfly.backends.hf_options import HfOptions
from damselfly.backends.modelscope_options import ModelScopeOptions
from damselfly.backends.options import SourceOptions
from damselfly.core.urls import HubUrl, SourceUrl
from damselfly.download.hub_layouts import (
    HfCacheLayout,
    HfLocalDirLayout,
    HubLayout,
    ModelScopeCacheLayout,
    default_hf_cache_dir,
    default_ms_cache_dir,
)


def hub_layout(
    url: SourceUrl,
    options: SourceOptions | None,
    output: str | None,
    recursive: bool,
    env: Mapping[str, str],
) -> HubLayout | None:
    if not isinstance(url, HubUrl):
        return None
    out = Path(output) if output else None
    if isinstance(options, HfOptions) and options.cache:
        cache = out or default_hf_cache_dir(env).absolute()
        return HfCacheLayout(cache, url, options.revision)
    if isinstance(options, ModelScopeOptions) and options.cache:
        cache = out or default_ms_cache_dir(env).absolute()
        return ModelScopeCacheLayout(cache, url, options.revision)
    if isinstance(options, HfOptions) and recursive and out is not None:
        return HfLocalDirLayout(out, url)
    return None
