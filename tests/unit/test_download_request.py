"""``DownloadRequest``: JSON round trip, refusals, environment filtering, secrets kept out of
``repr``; the default socket path; building jobs from a request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from damselfly.backends.hf_options import HfOptions
from damselfly.backends.modelscope_options import ModelScopeOptions
from damselfly.backends.objectstore_options import ObjectStoreOptions
from damselfly.cli.dfget_args import build_parser, parse_args
from damselfly.cli.dfget_jobs import request_from_args
from damselfly.config.paths import SYSTEM_SOCKET_PATH, default_socket_path
from damselfly.core.errors import ProtocolError, UsageError
from damselfly.download.request import DownloadRequest
from damselfly.download.request_checks import job_env
from damselfly.download.request_jobs import build_file_job, build_jobs
from damselfly.download.tree_download import TreeJob

FULL = DownloadRequest(
    url="https://h/f.bin?X-Amz-Signature=sig",
    output="/data/f.bin",
    recursive=False,
    include=("*.json",),
    exclude=("*.bin",),
    digest="sha256:" + "a" * 64,
    piece_length=8 << 20,
    headers=(("Authorization", "Bearer s3cret"), ("X-Trace", "1")),
    tag="t",
    application="app",
    filtered_query_params=("foo",),
    overwrite=True,
    force_hard_link=True,
    content_for_task_id="id-text",
    max_files=7,
    concurrent_files=3,
    insecure=True,
    timeout=90.5,
    origin_retries=2,
    concurrent_pieces=4,
    back_to_source=False,
    env={"HF_TOKEN": "env_tok3n", "HOME": "/home/u"},
)
HF = DownloadRequest(
    url="hf://owner/repo/f.bin",
    source=HfOptions(token=SecretStr("hf_tok3n"), revision="v1", cache=True),
)
MS = DownloadRequest(
    url="modelscope://owner/repo/f.bin", source=ModelScopeOptions(token=SecretStr("ms_tok3n"))
)
S3 = DownloadRequest(
    url="s3://bucket/f.bin",
    output="/o",
    source=ObjectStoreOptions(
        access_key_secret=SecretStr("k3y"),
        session_token=SecretStr("sess10n"),
        environment={"s3_secret_access_key": SecretStr("env_s3cret")},
    ),
)


@pytest.mark.parametrize("request_", [FULL, HF, MS, S3])
def test_json_round_trip_keeps_every_field(request_):
    text = request_.to_json()
    assert DownloadRequest.from_json(text) == request_
    assert DownloadRequest.from_json(text.encode()) == request_
    assert type(DownloadRequest.from_json(text).source) is type(request_.source)


def test_secrets_travel_in_clear_only_in_the_json():
    assert '"token":"hf_tok3n"' in HF.to_json()
    assert DownloadRequest.from_json(HF.to_json()).resolved_source.request_params(
        HF.source_url
    ) == (
        ("hf_endpoint", "https://huggingface.co"),
        ("hf_token", "hf_tok3n"),
        ("hf_revision", "v1"),
    )


def test_minimal_request_takes_defaults():
    request = DownloadRequest.from_json('{"url": "https://h/f", "output": "/o"}')
    assert request == DownloadRequest(url="https://h/f", output="/o")
    assert (request.concurrent_files, request.origin_retries, request.back_to_source) == (
        5,
        4,
        True,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"output": "/o"}', "missing field: url"),
        ('{"url": "u", "outptu": "/o"}', r"unknown field\(s\): outptu"),
        ('{"url": 5}', "url: Input should be a valid string"),
        ('{"url": "u", "recursive": "yes"}', "recursive: Input should be a valid boolean"),
        ('{"url": "u", "piece_length": true}', "piece_length: Input should be a valid integer"),
        ('{"url": "u", "piece_length": 1.5}', "piece_length: Input should be a valid integer"),
        ('{"url": "u", "include": "*.json"}', "include: Input should be a valid (tuple|array)"),
        ('{"url": "u", "include": [1]}', r"include\[0\]: Input should be a valid string"),
        ('{"url": "u", "headers": [["A"]]}', r"headers\[0\]\[1\]: Field required"),
        ('{"url": "u", "env": {"HOME": 1}}', "Input should be a valid string"),
        ('{"url": "hf://o/r", "source": {"tokn": "t"}}', r"unknown field\(s\): source.tokn"),
        (
            '{"url": "hf://o/r", "source": {"cache": 1}}',
            "source.cache: Input should be a valid bool",
        ),
        ('{"url": "https://h/f", "source": {}}', "https:// takes no source options"),
        ('{"url": "s3://b/k", "source": {"environment": {"s3_region": 5}}}', "valid string"),
    ],
)
def test_malformed_json_is_a_protocol_error(body, message):
    with pytest.raises(ProtocolError, match=message):
        DownloadRequest.from_json(body)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"output": "relative/out"}, "not an absolute path"),
        ({"url": ""}, "url is empty"),
        ({"piece_length": 0}, "piece_length must be greater than zero"),
        ({"origin_retries": -1}, "origin_retries must not be negative"),
        ({"env": {"PATH": "/bin"}}, "'PATH' is not one job building reads"),
        ({"headers": [["X-A", "1\r\nInjected: 2"]]}, "line break"),
        ({"headers": [["Bad Name", "v"]]}, "not valid"),
    ],
)
def test_invalid_values_are_usage_errors(fields, message):
    body = {"url": "https://h/f", "output": "/o", **fields}
    with pytest.raises(UsageError, match=message):
        DownloadRequest.from_json(json.dumps(body))


def test_repr_hides_secrets_and_signed_query():
    shown = " ".join(repr(r) for r in (FULL, HF, MS, S3))
    for secret in ("s3cret", "hf_tok3n", "ms_tok3n", "k3y", "sess10n", "env_tok3n", "sig"):
        assert secret not in shown
    assert "env_s3cret" not in shown
    assert "https://h/f.bin" in shown
    assert "output='/data/f.bin'" in shown


def test_job_env_keeps_only_what_job_building_reads():
    env = {
        "HF_TOKEN": "1",
        "HF_HUB_CACHE": "2",
        "HUGGING_FACE_HUB_TOKEN": "3",
        "HUGGINGFACE_HUB_CACHE": "4",
        "MODELSCOPE_CACHE": "5",
        "AWS_ACCESS_KEY_ID": "6",
        "GOOGLE_APPLICATION_CREDENTIALS": "7",
        "AZURE_STORAGE_KEY": "8",
        "OSS_ENDPOINT": "9",
        "OBS_ENDPOINT": "10",
        "COS_SECRET_ID": "11",
        "HADOOP_USER_NAME": "12",
        "HOME": "13",
        "XDG_CACHE_HOME": "14",
        "PATH": "/bin",
        "LD_PRELOAD": "x.so",
        "SSH_AUTH_SOCK": "/s",
        "DFGET_OUTPUT": "/o",
        "AZURE_CLIENT_SECRET": "no",
        "HFX": "no",
    }
    kept = job_env(env)
    assert kept["HF_TOKEN"] == "1"
    assert set(kept) == set(env) - {
        "PATH",
        "LD_PRELOAD",
        "SSH_AUTH_SOCK",
        "DFGET_OUTPUT",
        "AZURE_CLIENT_SECRET",
        "HFX",
    }


def test_request_from_args_resolves_paths_and_parses_values():
    argv = ["https://h/f", "-O", "sub/f.bin", "--piece-length", "8MiB", "--timeout", "1m30s"]
    argv += ["-H", "X-A: 1", "--disable-back-to-source", "--max-concurrent-requests", "3"]
    args = parse_args(argv, {})
    env = {"HOME": "/home/u", "PATH": "/bin", "AWS_REGION": "r"}
    request = request_from_args(args, env, Path("/work"))
    assert request.output == "/work/sub/f.bin"
    assert (request.piece_length, request.timeout) == (8 << 20, 90.0)
    assert request.headers == (("X-A", "1"),)
    assert request.back_to_source is False
    assert request.concurrent_files == 3
    assert request.env == {"HOME": "/home/u", "AWS_REGION": "r"}


def test_out_of_range_numbers_are_refused_not_clamped():
    argv = ["https://h/f", "-O", "f.bin", "--max-concurrent-requests", "0"]
    with pytest.raises(UsageError, match="--max-concurrent-requests 0: must be from 1 to 256"):
        parse_args(argv, {})
    with pytest.raises(UsageError, match="--concurrent-pieces -3"):
        parse_args(["https://h/f", "-O", "f.bin"], {"DFGET_CONCURRENT_PIECES": "-3"})


def test_object_store_environment_becomes_params_flags_win():
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_SECRET_ACCESS_KEY": "from-env"}
    argv = ["s3://bucket/key", "-O", "/o", "--storage-access-key-secret", "from-flag"]
    request = request_from_args(build_parser({}).parse_args(argv), env, Path("/work"))
    request = DownloadRequest.from_json(request.to_json())  # as the daemon gets it
    options = build_file_job(request).options
    assert options.param("s3_endpoint") == "http://127.0.0.1:9"
    assert options.param("s3_secret_access_key") == "from-flag"
    assert [k for k, _ in options.params].count("s3_secret_access_key") == 1


def test_output_is_required_without_a_hub_cache():
    with pytest.raises(UsageError, match="-O/--output is required"):
        build_jobs(DownloadRequest(url="https://h/f"))
    tree = build_jobs(DownloadRequest(url="s3://bucket/dir/", output="/o", recursive=True))
    assert isinstance(tree, TreeJob)
    assert tree.template.output == Path("/o")


@pytest.mark.parametrize(
    ("uid", "env", "expected"),
    [
        (0, {"XDG_RUNTIME_DIR": "/run/user/0"}, SYSTEM_SOCKET_PATH),
        (1000, {"XDG_RUNTIME_DIR": "/run/user/1000"}, "/run/user/1000/damselfly/dfdaemon.sock"),
        (1000, {"XDG_RUNTIME_DIR": "relative", "HOME": "/home/u"}, None),
        (1000, {"HOME": "/home/u"}, "/home/u/.cache/damselfly/dfdaemon.sock"),
    ],
)
def test_default_socket_path(uid, env, expected):
    expected = expected or "/home/u/.cache/damselfly/dfdaemon.sock"
    assert default_socket_path(env, uid) == Path(expected)
    assert str(SYSTEM_SOCKET_PATH) == "/var/run/damselfly/dfdaemon.sock"


def test_hf_options_are_resolved_once_by_dfget_as_the_user(tmp_path):
    """The token file is read by dfget (a daemon may not be able to read it); the request
    carries the result typed, and flags of another scheme are ignored."""
    token_file = tmp_path / "token"
    token_file.write_text("file_tok3n\n")
    token_file.chmod(0o600)
    env = {"HF_TOKEN_PATH": str(token_file), "HF_ENDPOINT": "http://127.0.0.1:9/"}
    argv = ["hf://owner/repo/f.bin", "-O", "/o", "--hf-revision", "v2", "--ms-token", "x"]
    request = request_from_args(build_parser({}).parse_args(argv), env, Path("/work"))
    assert request.source == HfOptions(
        token=SecretStr("file_tok3n"), revision="v2", endpoint="http://127.0.0.1:9"
    )
    token_file.unlink()  # the daemon side never reads it again
    options = build_file_job(DownloadRequest.from_json(request.to_json())).options
    assert options.param("hf_token") == "file_tok3n"
    https = ["https://h/f", "-O", "/o", "--hf-token", "t", "--hf-cache"]
    assert request_from_args(build_parser({}).parse_args(https), env, Path("/w")).source is None


@pytest.mark.parametrize(
    ("flag", "safer"), [("--hf-token", "HF_TOKEN"), ("--ms-token", "MODELSCOPE_API_TOKEN")]
)
def test_token_flags_say_argv_is_visible_in_the_process_list(flag, safer):
    help_text = " ".join(build_parser({}).format_help().split())
    said = help_text.split(f"{flag} TOKEN ", 1)[1]
    assert said.startswith(f"visible to every user in the process list (ps): prefer {safer}")


def test_no_hard_link_travels_and_reaches_the_job():
    copy = DownloadRequest(url="https://h/f", output="/o", hard_link=False)
    assert '"hard_link":false' in copy.to_json()
    received = DownloadRequest.from_json(copy.to_json())
    assert received.hard_link is False
    assert build_file_job(received).hard_link is False
    assert build_file_job(DownloadRequest(url="https://h/f", output="/o")).hard_link is True


def test_the_default_hard_link_is_not_sent():
    """A daemon from before the field (``extra="forbid"``) still accepts the request."""
    assert '"hard_link"' not in DownloadRequest(url="https://h/f", output="/o").to_json()


def test_force_and_no_hard_link_contradict():
    with pytest.raises(UsageError, match="contradict"):
        DownloadRequest(url="https://h/f", output="/o", force_hard_link=True, hard_link=False)
