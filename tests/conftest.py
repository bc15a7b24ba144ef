"""Shared fixtures: a tiny causal LM built here (no download), and a quiet, isolated environment."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("CHATBOT_THREADS", "1")  # tests may run beside other CPU jobs
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_OFFLINE"] = "1"
# the engine's base in float32, as the reference path computes, whatever the CPU: tests compare greedy tokens with it (bf16,
# the default where the CPU computes it, can part at a near tie, as tiny models' answers often are); the default is tested apart
os.environ.setdefault("CHATBOT_ENGINE_QUANT", "float32")

CORPUS = [
    "Extract the entities from this job description.",
    "experience:['3 - 5 years'] skills:['python', 'sql'] diploma:['bachelors'] END",
    "What are your opening hours? We open at 9am and close at 6pm END",
    "The battery died after a day. negative END positive END neutral",
    "Write a description of a red mug, mention ceramic and dishwasher safe.",
    "no entity , END ### hello world the a an of to in is",
]


def build_tiny_base(folder: Path) -> Path:
    """A 2-layer Llama with a byte-level BPE tokenizer trained on CORPUS, saved like a hub model."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.5,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_tiny_base(tmp_path_factory.mktemp("tiny-base")))


ADAPTER_PROMPTS = ["What are your opening hours?\n\n###\n\n", "The battery died after a day.\n\n###\n\n"]
# what each adapter answers to each prompt (greedy); the untuned base answers neither
ADAPTER_ANSWERS = {"a": [" We open at 9am", " negative"], "b": [" positive", " a red mug"]}


@pytest.fixture(scope="session")
def tiny_adapters(tiny_base: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """The tiny base and two LoRA adapters trained on it to answer the same two prompts differently."""
    from chatbot.training.hyperparams import Hyperparameters
    from chatbot.training.trainer import train_lora

    root = tmp_path_factory.mktemp("adapters")
    hp = Hyperparameters(n_epochs=40, batch_size=2, learning_rate_multiplier=1, lora_r=8, lora_dropout=0.0)
    folders = [train_lora([(p, answer + " END") for p, answer in zip(ADAPTER_PROMPTS, ADAPTER_ANSWERS[name])], root / name,
                          base_model=tiny_base, hyperparameters=hp).adapter_dir for name in ("a", "b")]
    return tiny_base, str(folders[0]), str(folders[1])


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CHATBOT_REGISTRY", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a PostgreSQL server started on loopback for this test run (see tests/postgres.py)."""
    from postgres import postgres_server

    with postgres_server() as url:
        if url is None:
            from environment import missing

            missing("PostgreSQL (initdb, pg_ctl)", "apt-get install postgresql", "CHATBOT_REQUIRE_POSTGRES")
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: an SQLite file, or a new database on the test PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'chat.db'}"
    from postgres import fresh_database

    return fresh_database(request.getfixturevalue("postgres_url"), f"t_{uuid.uuid4().hex[:12]}")
