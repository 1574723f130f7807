"""The built-in schemes' options specs: the hubs (hf://, modelscope://) and object storage.

Flags and declarations only (no pydantic, no backend library): ``options_catalog()`` builds
dfget's parser from them at every start. Each ``resolve`` and model loader imports its
backend's ``*_options.py`` when a URL of that scheme is resolved.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from damselfly.backends.option_specs import (
    FlagDefaults,
    Flags,
    OptionsSpec,
    PlainResolve,
    Resolve,
    flag_group,
)
from damselfly.core.schemes import OBJECT_STORE_SCHEMES

if TYPE_CHECKING:
    from damselfly.backends.options import SourceOptions


def add_hub_flags(
    parser: argparse.ArgumentParser,
    e: FlagDefaults,
    prefix: str,
    cache_help: str,
    safer_token: str,
) -> None:
    """``--<prefix>-token``, ``-revision``, ``-base-url`` and ``-cache`` in the "model hubs"
    group. ``safer_token``: where else the token can come from, named in the token's help
    (argv is visible to every user in the process list)."""
    hub = flag_group(parser, "model hubs")
    hub.add_argument(
        f"--{prefix}-token",
        default=e.text(f"{prefix}_token"),
        metavar="TOKEN",
        help=f"visible to every user in the process list (ps): prefer {safer_token}",
    )
    hub.add_argument(f"--{prefix}-revision", default=e.text(f"{prefix}_revision"))
    hub.add_argument(f"--{prefix}-base-url", default=e.text(f"{prefix}_base_url"))
    hub.add_argument(
        f"--{prefix}-cache", action="store_true", default=e.flag(f"{prefix}_cache"), help=cache_help
    )


def _hf_flags(parser: argparse.ArgumentParser, e: FlagDefaults) -> None:
    help_ = "hf:// into the Hugging Face cache (HF_HUB_CACHE; with -O: the cache dir)"
    safer = "HF_TOKEN or a token file (HF_TOKEN_PATH, default $HF_HOME/token; mode 0600)"
    add_hub_flags(parser, e, "hf", help_, safer)


def _ms_flags(parser: argparse.ArgumentParser, e: FlagDefaults) -> None:
    help_ = "modelscope:// into the ModelScope cache (MODELSCOPE_CACHE; with -O: the cache dir)"
    safer = "MODELSCOPE_API_TOKEN or the login `modelscope login` saves (mode 0600)"
    add_hub_flags(parser, e, "ms", help_, safer)


def _storage_flags(parser: argparse.ArgumentParser, e: FlagDefaults) -> None:
    store = flag_group(parser, "object storage")
    store.add_argument("--storage-endpoint", default=e.text("storage_endpoint"))
    store.add_argument("--storage-region", default=e.text("storage_region"))
    store.add_argument("--storage-access-key-id", default=e.text("storage_access_key_id"))
    store.add_argument("--storage-access-key-secret", default=e.text("storage_access_key_secret"))
    store.add_argument("--storage-session-token", default=e.text("storage_session_token"))


def _hf_model() -> type[SourceOptions]:
    from damselfly.backends.hf_options import HfOptions

    return HfOptions


def _hf_plain(flags: Flags, env: Mapping[str, str], scheme: str) -> dict[str, Any]:
    from damselfly.backends.hf_api import hf_option_values  # no model: no pydantic

    return hf_option_values(
        token=flags.get("hf_token"),
        revision=flags.get("hf_revision"),
        endpoint=flags.get("hf_base_url"),
        env=env,
        cache=bool(flags.get("hf_cache")),
    )


def _ms_model() -> type[SourceOptions]:
    from damselfly.backends.modelscope_options import ModelScopeOptions

    return ModelScopeOptions


def _ms_plain(flags: Flags, env: Mapping[str, str], scheme: str) -> dict[str, Any]:
    from damselfly.backends.modelscope_values import ms_flag_values  # no model: no pydantic

    return ms_flag_values(flags, env)


def _validated(load_model: Callable[[], type[SourceOptions]], plain: PlainResolve) -> Resolve:
    """A hub's ``resolve``: its plain values (what dfget hands off) checked by its model."""

    def resolve(flags: Flags, env: Mapping[str, str], scheme: str) -> SourceOptions:
        return load_model().model_validate(plain(flags, env, scheme))

    return resolve


def _store_model() -> type[SourceOptions]:
    from damselfly.backends.objectstore_options import ObjectStoreOptions

    return ObjectStoreOptions


def _store_resolve(flags: Flags, env: Mapping[str, str], scheme: str) -> SourceOptions:
    from damselfly.backends.objectstore_options import resolve_store_options

    return resolve_store_options(flags, env, scheme)


HF_OPTIONS = OptionsSpec(
    name="hf",
    schemes=frozenset({"hf"}),
    load_model=_hf_model,
    resolve=_validated(_hf_model, _hf_plain),
    resolve_plain=_hf_plain,
    add_flags=_hf_flags,
    env_names=frozenset({"HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_CACHE"}),
    env_prefixes=("HF_",),
)

MODELSCOPE_OPTIONS = OptionsSpec(
    name="modelscope",
    schemes=frozenset({"modelscope"}),
    load_model=_ms_model,
    resolve=_validated(_ms_model, _ms_plain),
    resolve_plain=_ms_plain,
    add_flags=_ms_flags,
    env_prefixes=("MODELSCOPE_",),
)

OBJECT_STORE_OPTIONS = OptionsSpec(
    name="object_storage",
    schemes=frozenset(OBJECT_STORE_SCHEMES | {"hdfs"}),
    load_model=_store_model,
    resolve=_store_resolve,
    add_flags=_storage_flags,
    env_names=frozenset({"GOOGLE_APPLICATION_CREDENTIALS", "HADOOP_USER_NAME"}),
    env_prefixes=("AWS_", "AZURE_STORAGE_", "OSS_", "OBS_", "COS_"),
)

BUILT_IN_SPECS = (HF_OPTIONS, MODELSCOPE_OPTIONS, OBJECT_STORE_OPTIONS)
