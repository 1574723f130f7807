"""The object stores ``ObjectStoreBackend`` knows, as data: ``STORES``.

Each ``Setting`` is an OpenDAL config key with the environment variables it falls back to; the
request param is ``<scheme>_<key>`` unless the table names another. Plain data with no OpenDAL
import, so option resolution (``objectstore_options.py``) can read it at start-up cost zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Setting:
    key: str  # OpenDAL config key
    env: tuple[str, ...] = ()  # fallbacks, first one set wins
    secret: bool = False  # never shown anywhere
    credential: bool = False  # any credential present -> signed access
    param: str | None = None  # param suffix when it differs from ``key``
    boolean: bool = False  # true/false/1/0/yes/no/on/off
    invert: bool = False  # the param means the opposite of the OpenDAL key


@dataclass(frozen=True)
class StoreSpec:
    service: str  # OpenDAL service name
    bucket_key: str | None  # config key the URL's bucket goes to (None: hdfs)
    settings: tuple[Setting, ...]
    fixed: Mapping[str, str] = field(default_factory=dict)
    anonymous: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, str] = field(default_factory=dict)
    default_endpoint: str | None = None  # str.format over the config plus host and port

    def param_name(self, scheme: str, setting: Setting) -> str:
        return f"{scheme}_{setting.param or setting.key}"


_NO_DISCOVERY = {"disable_config_load": "true"}
_SKIP_SIGNATURE = {"skip_signature": "true"}

STORES: Mapping[str, StoreSpec] = {
    "s3": StoreSpec(
        "s3",
        "bucket",
        (
            Setting("endpoint", ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")),
            Setting("region", ("AWS_REGION", "AWS_DEFAULT_REGION")),
            Setting("access_key_id", ("AWS_ACCESS_KEY_ID",), credential=True),
            Setting("secret_access_key", ("AWS_SECRET_ACCESS_KEY",), secret=True, credential=True),
            Setting("session_token", ("AWS_SESSION_TOKEN",), secret=True),
            Setting(
                "enable_virtual_host_style", param="force_path_style", boolean=True, invert=True
            ),
        ),
        fixed={**_NO_DISCOVERY, "disable_ec2_metadata": "true"},
        anonymous=_SKIP_SIGNATURE,
        defaults={"region": "us-east-1"},
    ),
    "gs": StoreSpec(
        "gcs",
        "bucket",
        (
            Setting("endpoint"),
            Setting("credential_path", ("GOOGLE_APPLICATION_CREDENTIALS",), credential=True),
            Setting("token", secret=True, credential=True),
        ),
        fixed={**_NO_DISCOVERY, "disable_vm_metadata": "true"},
        anonymous=_SKIP_SIGNATURE,
    ),
    "abs": StoreSpec(
        "azblob",
        "container",
        (
            Setting("endpoint"),
            Setting("account_name", ("AZURE_STORAGE_ACCOUNT",)),
            Setting("account_key", ("AZURE_STORAGE_KEY",), secret=True, credential=True),
            Setting("sas_token", ("AZURE_STORAGE_SAS_TOKEN",), secret=True, credential=True),
        ),
        anonymous=_SKIP_SIGNATURE,
        default_endpoint="https://{account_name}.blob.core.windows.net",
    ),
    "oss": StoreSpec(
        "oss",
        "bucket",
        (
            Setting("endpoint", ("OSS_ENDPOINT",)),
            Setting("access_key_id", ("OSS_ACCESS_KEY_ID",), credential=True),
            Setting("access_key_secret", ("OSS_ACCESS_KEY_SECRET",), secret=True, credential=True),
            Setting("security_token", ("OSS_SESSION_TOKEN",), secret=True),
        ),
        anonymous=_SKIP_SIGNATURE,
    ),
    "obs": StoreSpec(
        "obs",
        "bucket",
        (
            Setting("endpoint", ("OBS_ENDPOINT",)),
            Setting("access_key_id", ("OBS_ACCESS_KEY_ID",), credential=True),
            Setting("secret_access_key", ("OBS_SECRET_ACCESS_KEY",), secret=True, credential=True),
        ),
    ),
    "cos": StoreSpec(
        "cos",
        "bucket",
        (
            Setting("endpoint", ("COS_ENDPOINT",)),
            Setting("secret_id", ("COS_SECRET_ID",), credential=True),
            Setting("secret_key", ("COS_SECRET_KEY",), secret=True, credential=True),
            Setting("security_token", ("COS_SECURITY_TOKEN",), secret=True),
        ),
        fixed=_NO_DISCOVERY,
    ),
    "hdfs": StoreSpec(
        "webhdfs",
        None,
        (
            Setting("endpoint"),
            Setting("delegation", secret=True, credential=True),
            Setting("user_name", ("HADOOP_USER_NAME",)),
        ),
        default_endpoint="http://{host}:{port}",
    ),
}
