"""The model repository the hub benchmark serves: sharded random weights plus small files.

Laid out like a sharded safetensors model on the Hub: ``model-0000X-of-0000N.safetensors``
shards of random bytes (what the transfer is about), the ``model.safetensors.index.json``
that maps tensors to shards, and the small files every download also fetches
(``config.json``, ``generation_config.json``, ``README.md``, a ~2 MiB ``tokenizer.json``).
Every file's sha256 is computed while it is written: the reference outputs are checked against.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from bench.common.workspace import write_random

TOKENIZER_LENGTH = 2 * 1024 * 1024  # about; a real 32k-token BPE tokenizer.json is 2 to 9 MiB
_SEED = 20261123  # the small files are the same in every run


@dataclass(frozen=True)
class RepoFile:
    path: str  # posix, relative to the repo root
    size: int
    sha256: str


@dataclass(frozen=True)
class ModelRepo:
    repo_id: str
    directory: Path
    files: tuple[RepoFile, ...]

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def shard_count(self) -> int:
        return sum(1 for f in self.files if f.path.endswith(".safetensors"))


def shard_names(shards: int) -> list[str]:
    return [f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)]


def build_repo(directory: Path, repo_id: str, *, shards: int, shard_size: int) -> ModelRepo:
    """Write the repo's files into ``directory`` and return their sizes and hashes."""
    directory.mkdir(parents=True, exist_ok=True)
    names = shard_names(shards)
    files = [_write(directory, name, text) for name, text in _small_files(names, shard_size)]
    for name in names:
        files.append(RepoFile(name, shard_size, write_random(directory / name, shard_size)))
    return ModelRepo(repo_id, directory, tuple(sorted(files, key=lambda f: f.path)))


def _write(directory: Path, name: str, text: str) -> RepoFile:
    data = text.encode()
    (directory / name).write_bytes(data)
    return RepoFile(name, len(data), hashlib.sha256(data).hexdigest())


def _small_files(shard_names: list[str], shard_size: int) -> list[tuple[str, str]]:
    return [
        ("README.md", _readme()),
        ("config.json", _dump(_config())),
        (
            "generation_config.json",
            _dump({"bos_token_id": 1, "eos_token_id": 2, "do_sample": True}),
        ),
        ("model.safetensors.index.json", _dump(_index(shard_names, shard_size))),
        ("tokenizer.json", _tokenizer()),
    ]


def _dump(value: object) -> str:
    return json.dumps(value, indent=2) + "\n"


def _readme() -> str:
    return (
        "---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n\n"
        "# bench/model\n\nRandom weights for damselfly's hub benchmark. Not a model.\n"
    )


def _config() -> dict[str, object]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_attention_heads": 32,
        "num_hidden_layers": 22,
        "num_key_value_heads": 4,
        "torch_dtype": "bfloat16",
        "vocab_size": 32000,
    }


def _index(shard_names: list[str], shard_size: int) -> dict[str, object]:
    weight_map = {
        f"model.layers.{layer}.{part}.weight": shard_names[layer * len(shard_names) // 22]
        for layer in range(22)
        for part in ("self_attn.q_proj", "self_attn.k_proj", "mlp.up_proj", "mlp.down_proj")
    }
    total = shard_size * len(shard_names)
    return {"metadata": {"total_size": total}, "weight_map": weight_map}


def _tokenizer() -> str:
    """A BPE-shaped tokenizer.json of about ``TOKENIZER_LENGTH`` bytes (deterministic)."""
    rng = random.Random(_SEED)
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    vocab: dict[str, int] = {}
    length = 0
    while length < TOKENIZER_LENGTH:
        token = "".join(rng.choices(alphabet, k=rng.randint(2, 12))) + f"_{len(vocab)}"
        vocab[token] = len(vocab)
        length += len(token) + 12  # quotes, colon, id, comma, indentation
    body = {"version": "1.0", "model": {"type": "BPE", "vocab": vocab, "merges": []}}
    return _dump(body)
