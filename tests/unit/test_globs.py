import pytest

from damselfly.core.globs import path_selected

CASES = [
    # path, include, exclude, selected
    ("model.safetensors", (), (), True),
    ("model.safetensors", ("*.safetensors",), (), True),
    ("config.json", ("*.safetensors",), (), False),
    ("onnx/model.onnx", ("*.onnx",), (), True),  # '*' crosses '/', as in fnmatch
    ("onnx/model.onnx", ("onnx/",), (), True),  # trailing '/' means everything below
    ("onnx_extra/model.onnx", ("onnx/",), (), False),
    ("onnx/model.onnx", (), ("onnx/",), False),
    ("model.safetensors", ("*",), ("*.safetensors",), False),  # exclude wins
    ("Model.BIN", ("*.bin",), (), False),  # case-sensitive
    ("a/b/c.txt", ("a/?/c.txt",), (), True),
    ("a/b/c.txt", ("a/[bc]/*",), (), True),
]


@pytest.mark.parametrize(("path", "include", "exclude", "selected"), CASES)
def test_path_selected(path, include, exclude, selected):
    assert path_selected(path, include, exclude) is selected
