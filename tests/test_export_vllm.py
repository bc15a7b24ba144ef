"""`chatbot export vllm`: the vLLM command for a registry's adapters, and a registry that reaches them
through an OpenAI-compatible server. Here our own server stands in for vLLM: like `vllm serve
--enable-lora --lora-modules NAME=PATH`, it serves each adapter under its skill's name on
/v1/completions with the prompt as given, so the exported bot must answer exactly as the local one."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from bot_helpers import write_adapter_registry
from typer.testing import CliRunner
from web_server import running

from chatbot import registry as registry_io
from chatbot.bot import Bot
from chatbot.cli import app
from chatbot.export import API_KEY_ENV, LORA_RANKS, vllm_plan
from chatbot.web import create_app

QUESTIONS = [("shop", "What are your opening hours?"), ("mood", "The battery died after a day.")]


def test_one_vllm_server_loads_the_base_once_with_every_adapter(tiny_adapters: tuple[str, str, str], tmp_path: Path) -> None:
    base, a, b = tiny_adapters
    plan = vllm_plan(registry_io.load(write_adapter_registry(tmp_path, base, a, b, max_tokens=4)), first_port=8100)
    [server] = plan.servers
    assert server.adapters == {"shop": Path(a).resolve(), "mood": Path(b).resolve()} and server.max_lora_rank in LORA_RANKS
    words = shlex.split(server.command())
    assert words[:3] == ["vllm", "serve", str(Path(base).resolve())] and "--enable-lora" in words
    assert sorted(words[words.index("--lora-modules") + 1:]) == [f"mood={Path(b).resolve()}", f"shop={Path(a).resolve()}"]
    assert words[words.index("--port") + 1] == "8100"
    for name, skill in plan.registry.skills.items():
        assert (skill.backend, skill.model, skill.base_url, skill.api_key_env, skill.adapter) == (
            "openai", name, "http://127.0.0.1:8100/v1", API_KEY_ENV, None)


def test_the_exported_registry_answers_as_the_local_bot(tiny_adapters: tuple[str, str, str], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    base, a, b = tiny_adapters
    path = write_adapter_registry(tmp_path, base, a, b, max_tokens=4)
    local = Bot.from_registry(path)
    with running(create_app(local, warm_up=False, fine_tuning=False)) as url:
        port = url.rsplit(":", 1)[1]
        out = tmp_path / "models.vllm.yaml"
        done = CliRunner().invoke(app, ["export", "vllm", "--registry", str(path), "--port", port, "--out", str(out)])
        assert done.exit_code == 0, done.output
        assert done.stdout.startswith("vllm serve ")
        again = CliRunner().invoke(app, ["export", "vllm", "--registry", str(path), "--port", port, "--out", str(out)])
        assert again.exit_code == 2 and "exists" in again.output  # never overwritten without --force
        monkeypatch.setenv(API_KEY_ENV, "any")
        exported = Bot.from_registry(out, data_dir=tmp_path / "exported")
        assert {s.backend for s in exported.registry.skills.values()} == {"openai"}
        for skill, text in QUESTIONS:
            assert exported.reply_once(text, skill=skill).text == local.reply_once(text, skill=skill).text
        printed = CliRunner().invoke(app, ["export", "vllm", "--registry", str(path), "--port", port])
        assert printed.exit_code == 0 and printed.stdout.startswith("# vllm serve ")
        assert registry_io.to_yaml(exported.registry).split("\n", 1)[1] in printed.stdout  # the same registry, printed


def test_export_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("version: 1\nskills:\n  hosted:\n    kind: qa\n    backend: openai\n    model: ft-x\n")
    done = CliRunner().invoke(app, ["export", "vllm", "--registry", str(path)])
    assert done.exit_code == 1 and "no local skill" in done.output
    done = CliRunner().invoke(app, ["export", "vllm", "--registry", str(path), "--out", str(tmp_path / "sub" / "x.yaml")])
    assert done.exit_code == 2 and "beside" in done.output
