from pathlib import Path

import pytest

from damselfly.cli.dfget_args import build_parser
from damselfly.cli.dfget_jobs import parse_header, request_from_args
from damselfly.core.digests import Digest
from damselfly.core.errors import InvalidUrlError, UsageError
from damselfly.core.urls import HttpUrl
from damselfly.download import request_jobs


def parse(argv, env=None):
    return build_parser(env or {}).parse_args(argv)


def build_file_job(args, env):
    return request_jobs.build_file_job(request_from_args(args, env, Path("/work")))


def build_tree_job(args, env):
    return request_jobs.build_tree_job(request_from_args(args, env, Path("/work")))


def test_defaults_match_dragonfly():
    args = parse(["https://h/f", "-O", "/tmp/f"])
    assert args.priority == 6
    assert args.timeout == "2h"
    assert args.max_concurrent_requests == 5
    assert args.recursive is False
    assert args.header == []


def test_environment_fills_flags_and_command_line_wins():
    env = {
        "DFGET_OUTPUT": "/tmp/from-env",
        "DFGET_TAG": "t1",
        "DFGET_OVERWRITE": "true",
        "DFGET_INCLUDE_FILES": "*.json, *.bin",
        "DFGET_URL": "https://h/env",
    }
    args = parse([], env)
    assert (args.url, args.output, args.tag, args.overwrite) == (
        "https://h/env",
        "/tmp/from-env",
        "t1",
        True,
    )
    assert args.include_files == ["*.json", "*.bin"]
    args = parse(["https://h/cli", "-O", "/tmp/cli", "--tag", "t2"], env)
    assert (args.url, args.output, args.tag) == ("https://h/cli", "/tmp/cli", "t2")


def test_bad_integer_in_environment_is_a_usage_error():
    with pytest.raises(UsageError, match="not an integer"):
        build_parser({"DFGET_MAX_FILES": "many"})


def test_file_job_carries_flags():
    args = parse(
        [
            "https://h/f?X-Amz-Signature=abc",
            "-O",
            "out.bin",
            "--digest",
            "SHA256:" + "A" * 64,
            "-H",
            "X-Trace: 1",
            "-H",
            "Authorization: Bearer s3cret",
            "--tag",
            "t",
            "--insecure",
            "--filtered-query-param",
            "foo",
            "--piece-length",
            "8MiB",
        ]
    )
    job = build_file_job(args, {})
    assert isinstance(job.url, HttpUrl)
    assert job.output == Path("/work/out.bin")
    assert job.expected_digest == Digest("sha256", "a" * 64)
    assert job.options.headers == (("X-Trace", "1"), ("Authorization", "Bearer s3cret"))
    assert job.options.insecure is True
    assert job.piece_length == 8 << 20
    assert job.filtered_query_params == ("foo",)
    assert "s3cret" not in repr(job.options)


def test_object_store_flags_become_scheme_params():
    args = parse(
        [
            "s3://bucket/key",
            "-O",
            "o",
            "--storage-endpoint",
            "http://127.0.0.1:9",
            "--storage-access-key-secret",
            "shh",
        ]
    )
    job = build_file_job(args, {})
    assert job.options.param("s3_endpoint") == "http://127.0.0.1:9"
    assert job.options.param("s3_secret_access_key") == "shh"
    assert "shh" not in repr(job.options)


def test_digest_with_recursive_is_refused():
    args = parse(["s3://bucket/dir/", "-O", "o", "-r", "--digest", "sha256:" + "0" * 64])
    with pytest.raises(UsageError, match="-r"):
        build_tree_job(args, {})


def test_bad_url_is_invalid_url_error():
    args = parse(["ftp://h/f", "-O", "o"])
    with pytest.raises(InvalidUrlError, match="scheme"):
        build_file_job(args, {})


@pytest.mark.parametrize("text", ["NoColon", ": empty", "Bad Name: v", "X: a\r\nInjected: 1"])
def test_parse_header_rejects(text):
    with pytest.raises(UsageError):
        parse_header(text)


def test_parse_header_keeps_colons_in_value():
    assert parse_header("Referer: https://a:8/x") == ("Referer", "https://a:8/x")


PLAIN_ARGS = [
    ["https://h/a.bin", "-O", "out.bin"],
    [
        "http://u:p@h/d/?X-Amz-Signature=s", "-O", "dir", "-r", "-I", "*.json", "--exclude",
        "*.bin", "-H", "Authorization: Bearer t", "--piece-length", "4MiB", "--timeout", "90s",
        "--disable-back-to-source", "--max-files", "7", "--tag", "t", "--insecure",
    ],
    ["file:///srv/x.bin", "-O", "/abs/x.bin", "--digest", "sha256:" + "0" * 64, "--overwrite"],
]  # fmt: skip


@pytest.mark.parametrize("argv", PLAIN_ARGS)
def test_plain_handoff_is_the_request_models_own_json(argv):
    """For a scheme without options dfget sends its fields as JSON without building the model;
    what the daemon reads from it must be exactly the request dfget would have built."""
    from damselfly.cli.daemon_client import Handoff
    from damselfly.cli.dfget_jobs import request_fields
    from damselfly.download.request import DownloadRequest

    env = {"HOME": "/home/u", "AWS_REGION": "x", "PATH": "/bin"}
    fields = request_fields(build_parser(env).parse_args(argv), env, Path("/work"))
    assert fields["source"] is None
    handoff = Handoff.from_fields(fields)
    model = DownloadRequest(**fields)
    assert DownloadRequest.from_json(handoff.body) == model
    assert DownloadRequest.from_json(Handoff.of(model).body) == model
    assert (handoff.timeout, handoff.back_to_source) == (model.timeout, model.back_to_source)
    assert handoff.what() == model.redacted_url()


def test_plain_fields_are_checked_as_the_model_checks_them():
    from damselfly.cli.dfget_jobs import request_fields

    args = build_parser({}).parse_args(["https://h/a", "-O", "o", "--max-concurrent-requests", "1"])
    args.max_concurrent_requests = 0  # past the parser's range check: the model's check holds
    with pytest.raises(UsageError, match="concurrent_files must be greater than zero"):
        request_fields(args, {}, Path("/work"))
