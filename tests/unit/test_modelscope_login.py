"""The token ``modelscope login`` saved: read with a restricted unpickler, mode checked."""

from __future__ import annotations

import importlib.util
import os
import pickle

import pytest

from damselfly.backends.modelscope_login import credentials_path, stored_ms_token
from damselfly.backends.modelscope_options import resolve_ms_token
from damselfly.config.secret_files import SecretFileModeError


@pytest.mark.skipif(importlib.util.find_spec("modelscope_hub") is None, reason="no modelscope")
def test_reads_what_the_sdk_saved(tmp_path, monkeypatch):
    from modelscope_hub.config import HubConfig

    monkeypatch.setenv("MODELSCOPE_HOME", str(tmp_path / "ms"))
    HubConfig(endpoint="http://127.0.0.1:1").save_token("ms-login-token")
    env = {"MODELSCOPE_HOME": str(tmp_path / "ms")}
    assert stored_ms_token(env) == "ms-login-token"
    assert resolve_ms_token(None, env) == "ms-login-token"
    assert resolve_ms_token(None, {**env, "MODELSCOPE_API_TOKEN": "env"}) == "env"
    assert stored_ms_token(env, now=4_000_000_000) is None  # expired
    path = credentials_path(env)
    os.chmod(path, 0o640)
    with pytest.raises(SecretFileModeError, match=r"cookies: refusing .*chmod 600"):
        stored_ms_token(env)  # ours, but readable by the group: refused with one line
    os.chmod(path, 0o666)
    assert stored_ms_token(env) is None  # writable by others: someone could have planted it


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_refuses_a_pickle_that_names_other_globals(tmp_path):
    path = credentials_path({"MODELSCOPE_HOME": str(tmp_path)})
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(Evil()))
    os.chmod(path, 0o600)
    assert stored_ms_token({"MODELSCOPE_HOME": str(tmp_path)}) is None
    assert stored_ms_token({"MODELSCOPE_HOME": str(tmp_path / "none")}) is None
