"""Every figure in the README's results block and in benchmarks/RESULTS.md comes from a script: each
section is rendered again here from the JSON its script saved and must match both files exactly.
The scripts themselves run end to end on small inputs (the tiny model, a few labelled messages)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from bot_helpers import REGISTRY, ScriptedBackend, write_registry

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import results  # noqa: E402

SCRIPTS = ["job_ner", "clinc150", "demo_router", "load", "epoch_selection", "run", "quantized", "gpu", "conversations"]


def script(name: str) -> Any:
    return importlib.import_module(name)


def test_every_section_is_rendered_from_its_json():
    saved = sorted(p.stem for p in BENCHMARKS.glob("*.json"))
    assert saved == sorted(script(n).NAME for n in SCRIPTS), "each script saves one JSON file beside RESULTS.md"
    in_results = results.sections(results.Output().results.read_text(encoding="utf-8"))
    in_readme = results.sections(results.Output().readme.read_text(encoding="utf-8"))
    assert set(in_results) == set(in_readme) == {script(n).TITLE for n in SCRIPTS}
    for name in SCRIPTS:
        module = script(name)
        data = results.load(module.NAME)
        for found, heading in ((in_results, "##"), (in_readme, "###")):
            assert found[module.TITLE] == results.section(module.TITLE, module.render(data), data["measured_at"], heading), name


def test_a_changed_figure_is_caught(tmp_path: Path):
    data = results.load("job_ner")
    data["mean"]["micro_f1"] += 0.1
    shown = results.sections(results.Output().results.read_text(encoding="utf-8"))["job-ner extraction"]
    assert shown != results.section("job-ner extraction", script("job_ner").render(data), data["measured_at"], "##")


def _published(out: Path, name: str) -> dict[str, Any]:
    module, data = script(name), json.loads((out / f"{script(name).NAME}.json").read_text(encoding="utf-8"))
    for path, heading in ((out / "RESULTS.md", "##"), (out / "README.md", "###")):
        assert results.sections(path.read_text(encoding="utf-8"))[module.TITLE] == results.section(
            module.TITLE, module.render(data), data["measured_at"], heading)
    return data


def test_job_ner_quick_run_on_the_tiny_model(tiny_base: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    rows = [{"prompt": f"We need {skill} and {years} years of experience.\n\n###\n\n",
             "completion": f" skills:['{skill}']\nexperience:['{years} years'] END"}
            for skill, years in zip(["python", "sql", "java", "excel", "go", "rust", "react", "linux", "c++", "scala"], range(1, 11))]
    data = tmp_path / "job-ner.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    module, evaluated = script("job_ner"), []
    real_run = module.run

    def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
        if args[0] == "eval":
            evaluated.append((env or {}).get("CHATBOT_ENGINE_QUANT"))
        return real_run(*args, cwd=cwd, env=env)

    monkeypatch.setattr(module, "run", run)
    monkeypatch.setenv("CHATBOT_ENGINE_QUANT", "int4")  # not a precision: the reference eval would fail if it saw it
    module.main(["--quick", "--splits", "2", "--base", tiny_base, "--data", str(data), "--out", str(tmp_path / "out"),
                 "--also-engine-quant", "bf16"])
    assert evaluated == [None, "bf16", None, "bf16"]
    found = _published(tmp_path / "out", "job_ner")
    assert found["engine_quant"] == "bf16" and all(set(s["engine_quant"]) == set(s["tuned"]) for s in found["splits"])
    assert "answering with `CHATBOT_ENGINE_QUANT=bf16`" in (tmp_path / "out" / "RESULTS.md").read_text()
    assert found["quick"] and [s["seed"] for s in found["splits"]] == [0, 1]
    assert all(s["held_out_rows"] == 2 and s["hyperparameters"]["n_epochs"] == 1 for s in found["splits"])
    assert all(len(s["answers"]) == 2 and {"line", "prediction"} == set(s["answers"][0]) for s in found["splits"])
    assert set(found["mean"]) == set(found["sd"]) == set(found["untuned"]) == {"micro_f1", "micro_precision", "micro_recall"}
    f1s = [s["tuned"]["micro_f1"] for s in found["splits"]]
    assert found["mean"]["micro_f1"] == pytest.approx(sum(f1s) / 2) and found["min_f1"] == min(f1s)


def _labelled(path: Path, skills: dict[str, list[str]], oos: list[str]) -> None:
    rows = [{"text": t, "label": s} for s, texts in skills.items() for t in texts] + [{"text": t, "label": "oos"} for t in oos]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_clinc150_quick_run_on_a_few_messages(tmp_path: Path):
    skills = {name: skill["routing_examples"] for name, skill in REGISTRY["skills"].items()}
    oos = REGISTRY["router"]["out_of_scope"]
    folder = tmp_path / "clinc"
    folder.mkdir()
    _labelled(folder / "train.jsonl", {s: t[:-2] for s, t in skills.items()}, oos[:-3])
    _labelled(folder / "validation.jsonl", {s: t[-2:] for s, t in skills.items()}, oos[-3:])
    script("clinc150").main(["--quick", "--seeds", "2", "--data", str(folder), "--out", str(tmp_path / "out")])
    found = _published(tmp_path / "out", "clinc150")
    assert found["quick"] and found["ours"]["test_in_scope"] == 6 and found["frozen"]["test_out_of_scope"] == 3
    assert [r["seed"] for r in found["seeds"]] == [0, 1] and found["seeds"][0]["oos_recall"] == found["ours"]["oos_recall"]
    assert "| mean ± sd (min–max) |" in (tmp_path / "out" / "RESULTS.md").read_text()


def test_demo_router_run_on_a_small_bot(tmp_path: Path):
    registry = tmp_path / "models.yaml"
    registry.write_text(yaml.safe_dump(REGISTRY))
    script("demo_router").main(["--registry", str(registry), "--out", str(tmp_path / "out")])
    found = _published(tmp_path / "out", "demo_router")
    assert set(found["reports"]) == {"never", "always"}
    assert [found["reports"][h]["finetuned"] for h in ("never", "always")] == [False, True]


def test_conversations_keeps_each_run_beside_the_earlier_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from test_conversation_tests import FAILING, PASSING
    from typer.testing import CliRunner

    from chatbot.backends import pool
    from chatbot.cli import app

    scripted = ScriptedBackend()
    monkeypatch.setitem(pool.FACTORIES, "local", (lambda skill: scripted, lambda skill: "local"))
    monkeypatch.chdir(tmp_path)
    write_registry(tmp_path)
    # the good file twice under one label: one row, the latest; the same label on another file: a row of its own
    for name, text, label in (("bad", FAILING, "the bad file"), ("good", PASSING, "the good file"), ("good", PASSING, "the good file"),
                              ("other", PASSING, "the good file")):
        (tmp_path / f"{name}.yaml").write_text(text)
        (tmp_path / f"{name}.json").write_text(CliRunner().invoke(app, ["test", f"{name}.yaml", "--json"]).stdout)
        script("conversations").main(["--label", label, "--report", str(tmp_path / f"{name}.json"), "--out", str(tmp_path / "out")])
    found = _published(tmp_path / "out", "conversations")
    assert [(r["label"], Path(r["file"]).name, r["routing"]["accuracy"], r["answers"]["passed"], r["passed"], r["turns"]) for r in found["runs"]] == [
        ("the bad file", "bad.yaml", 0.75, 1, 1, 4), ("the good file", "good.yaml", 1.0, 5, 5, 5), ("the good file", "other.yaml", 1.0, 5, 5, 5)]
    nothing = found["runs"][-1] | {"routing": found["runs"][-1]["routing"] | {"accuracy": None}}  # no turn checked the routing
    assert "| - (5 of 5) |" in script("conversations").render({"runs": [nothing]})
    shown = (tmp_path / "out" / "RESULTS.md").read_text()
    assert "| the bad file | `bad.yaml` |" in shown and "**75.0%** (3 of 4)" in shown and "**100.0%** ✓ (5 of 5)" in shown
    assert "| booking | 2 | 2 | 100.0% |" in shown and "| booking | 1 | 0 | 0.0% |" in shown  # each file's latest run, per skill
    assert shown.count("Its routing (rows") == 3


def test_load_quick_run_on_the_tiny_model(tiny_adapters: tuple[str, str, str], tmp_path: Path):
    base, a, b = tiny_adapters
    common = {"base_model": base, "separator": "\n\n###\n\n", "stop": [" END"], "generation": {"max_tokens": 8}}
    registry = tmp_path / "bot" / "models.yaml"
    registry.parent.mkdir()
    registry.write_text(yaml.safe_dump({"version": 1, "router": {"out_of_scope": REGISTRY["router"]["out_of_scope"]}, "skills": {
        name: common | {"kind": skill["kind"], "adapter": adapter, "routing_examples": skill["routing_examples"]}
        for (name, skill), adapter in zip(list(REGISTRY["skills"].items())[:2], (a, b))}}))
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"prompt": f"{text}\n\n###\n\n", "completion": " We open at 9am END"}) + "\n"
                            for text in REGISTRY["skills"]["shop"]["routing_examples"]))
    script("load").main(["--registry", str(registry), "--clients", "3", "--seconds", "3", "--job-base", base, "--job-data", str(rows),
                         "--out", str(tmp_path / "out")])
    found = _published(tmp_path / "out", "load")
    assert found["lost_turns"] == 0 and found["all"]["errors"] == 0, found
    assert all(found["kinds"][kind]["answered"] >= 1 for kind in ("chat", "stream", "session")) and found["turns_checked"] >= 1
    assert found["job"]["status"] == "succeeded" and found["healthz"]["probes"] >= 2 and found["healthz"]["failed"] == 0
    assert not (registry.parent / ".chatbot").exists() and "ft-" not in registry.read_text()  # the server ran on a copy


def test_epoch_selection_run_on_the_tiny_model(tiny_base: str, tmp_path: Path):
    from chatbot.training.hyperparams import Hyperparameters
    from chatbot.training.skill import train_skill

    bot = tmp_path / "bot"
    (bot / "data").mkdir(parents=True)
    rows = [{"prompt": f"Where is item {i}?\n\n###\n\n", "completion": f" On shelf {i % 3} END"} for i in range(15)]
    for name, part in (("train", rows[:10]), ("valid", rows[10:])):
        (bot / "data" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    train_skill("shelf", "qa", bot / "data" / "train.jsonl", valid=bot / "data" / "valid.jsonl", base=tiny_base,
                hyperparameters=Hyperparameters(n_epochs=1), registry_path=bot / "models.yaml")
    script("epoch_selection").main(["--registry", str(bot / "models.yaml"), "--base", tiny_base, "--seeds", "2", "--out", str(tmp_path / "out")])
    found = _published(tmp_path / "out", "epoch_selection")
    runs = found["skills"]["shelf"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1] and found["default"] in found["mean"]
    for shelf in runs:
        assert (shelf["train_rows"], shelf["selection_rows"], shelf["test_rows"], shelf["metric"]) == (8, 2, 5, "token_f1")
        assert len(shelf["valid_loss"]) == len(shelf["valid_metric"]) == shelf["epochs"] and shelf["policies"]["last"] == {
            "epoch": shelf["epochs"], "trained": shelf["epochs"], "score": shelf["policies"]["last"]["score"]}
        never = shelf["policies"]["best-loss, never stop"]
        assert shelf["valid_loss"][never["epoch"] - 1] == min(shelf["valid_loss"])  # the pick is the lowest selection loss
        by_metric = shelf["policies"]["best-metric, never stop"]
        assert shelf["valid_metric"][by_metric["epoch"] - 1] == max(shelf["valid_metric"])  # or the best selection metric
    mean = found["skills"]["shelf"]["mean"]
    assert mean["last"] == sum(r["policies"]["last"]["score"] for r in runs) / 2
    assert set(found["mean"]) == set(mean) and isinstance(found["default_never_worse_than_last"], bool)


DECODERS = {"ours", "ours_float32", "ours_int8", "ours_llamacpp", "reference", "llamacpp", "transformers"}  # ours_llamacpp: None on the tiny model (no GGUF)
RUN_KEYS = {"decode_tps": DECODERS, "first_token_s": DECODERS, "aggregate": {"ours", "ours_float32", "ours_int8", "reference"},
            "route_ms": {"p50", "p95", "messages"}, "route_ms_alone": {"p50", "p95", "messages"}, "turn_s": {"ours_p50", "ours_p95", "llamacpp_p50", "llamacpp_lora_p50", "turns"},
            "train_tps": {"ours", "hf_trainer", "ours_s", "ours_with_loading_s", "hf_trainer_s", "tokens", "rows"}}


def test_run_quick_on_the_tiny_model_writes_every_row_and_key(tiny_base: str, tmp_path: Path):
    script("run").main(["--quick", "--base", tiny_base, "--out", str(tmp_path / "out")])
    found = _published(tmp_path / "out", "run")
    for key, inner in RUN_KEYS.items():
        assert set(found[key]) == inner, key
    assert found["rss_mb"].keys() == {"skills_1", "skills_4", "skills_8", "naive_4"} and all(v > 0 for v in found["rss_mb"].values())
    assert set(found["server"]) >= {"rps_1", "rps_8", "p95_ms_8"} and found["server"]["requests"]["users_8"] > 0
    assert all(runs.keys() == {"1", "4", "8"} for runs in found["aggregate"].values())
    assert found["aggregate_tps_8_sessions"] > 0 and found["batch1_tps"] > 0
    assert found["decode_tps"]["ours_llamacpp"] is None and found["decode_tps"]["llamacpp"] is None
    assert found["decode_tps"]["ours"] > 0 and found["train_tps"]["ours"] > 0 and found["train_tps"]["hf_trainer"] > 0
    assert {"machine", "date", "versions"} <= found.keys()
    shown = (tmp_path / "out" / "RESULTS.md").read_text()
    assert shown.count("| resident MB with") == 2 and "HF Trainer" in shown and shown.count("aggregate tokens/s, 8 concurrent") == 4


def test_gpu_rows_run_on_the_cpu_and_publish_from_a_saved_run(tiny_base: str, tmp_path: Path):
    script("gpu").main(["--quick", "--device", "cpu", "--base", tiny_base, "--out", str(tmp_path / "out")])
    found = _published(tmp_path / "out", "gpu")
    assert found["device"] == "cpu" and found["machine"]["gpu"] is None and found["quick"]
    assert set(found["decode_tps"]) == set(found["first_token_s"]) == {"ours", "reference", "transformers"}
    assert found["aggregate"].keys() == {"1", "4"} and all(run["tps"] > 0 and run["transformers_tps"] > 0 for run in found["aggregate"].values())
    assert found["aggregate"]["4"]["rows_at_most"] == 4  # the four requests in one batch
    assert found["memory_mb"].keys() == {"skills_1", "skills_4", "naive_one", "naive_4"}
    assert found["same"]["skills"] == 4 and found["train_tps"]["ours"] > 0 and found["train_tps"]["hf_trainer"] > 0
    found["measured_at"] = "2000-01-01 00:00 UTC"  # a run saved elsewhere, published here without measuring
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(found))
    script("gpu").main(["--publish", str(saved), "--out", str(tmp_path / "again")])
    assert _published(tmp_path / "again", "gpu") == found


def test_gpu_stops_where_no_gpu_is(tmp_path: Path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    with pytest.raises(SystemExit, match="no CUDA device"):
        script("gpu").main(["--out", str(tmp_path)])


def test_quantized_run_on_the_tiny_adapters(tiny_adapters: tuple[str, str, str], tmp_path: Path):
    from bot_helpers import write_adapter_registry
    from conftest import ADAPTER_ANSWERS, ADAPTER_PROMPTS

    base, a, b = tiny_adapters
    bot = tmp_path / "bot"
    bot.mkdir()
    path = write_adapter_registry(bot, base, a, b, max_tokens=8)
    data = yaml.safe_load(path.read_text())
    for name, answers in (("shop", ADAPTER_ANSWERS["a"]), ("mood", ADAPTER_ANSWERS["b"])):
        (bot / f"{name}.jsonl").write_text("".join(json.dumps({"prompt": p, "completion": f"{x} END"}) + "\n"
                                                   for p, x in zip(ADAPTER_PROMPTS, answers)))
        data["skills"][name]["training"] = {"data_file": f"{name}.jsonl", "data_sha256": "-", "valid_file": f"{name}.jsonl",
                                            "base_model": base, "hyperparameters": {}}
    path.write_text(yaml.safe_dump(data))
    before = path.read_text()
    script("quantized").main(["--registry", str(path), "--out", str(tmp_path / "out")])
    found = _published(tmp_path / "out", "quantized")
    assert set(found["skills"]) == {"shop", "mood"} and found["skills"]["mood"]["metric"] == "accuracy"
    assert all({"float32", "int8", "points"} <= s.keys() and s["rows"] == 2 for s in found["skills"].values())
    shop = found["skills"]["shop"]
    assert "int8" in found["modes"] and shop["points"] == {m: 100 * (shop[m]["score"] - shop["float32"]["score"]) for m in found["modes"]}
    assert found["skills"]["shop"]["float32"]["score"] == 1.0  # the trained answers, word for word
    assert path.read_text() == before  # the scores went into a copy
    higher = {"skills": {"s": {"metric": "m", "rows": 1, "float32": {"score": 0.5, "seconds": 1}, "bf16": {"score": 0.6, "seconds": 1},
                               "points": {"bf16": 10.0}}}, "modes": ["bf16"], "within_bar": {"bf16": False},
              "never_below_bar": {"bf16": True}, "cpu_cores": 2, "registry": "r"}
    assert "bf16: not within 1 point of float32 on every skill (none more than 1 point below it)" in script("quantized").render(higher)
