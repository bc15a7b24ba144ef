"""Every figure in the README's results block and in benchmarks/RESULTS.md comes from a script: each
section is rendered again here from the JSON its script saved and must match both files exactly.
The scripts themselves run end to end on small inputs (the tiny model, a few labelled messages)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from bot_helpers import REGISTRY

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import results  # noqa: E402

SCRIPTS = ["job_ner", "clinc150", "demo_router", "load"]


def script(name: str) -> Any:
    return importlib.import_module(name)


def test_every_section_is_rendered_from_its_json():
    saved = sorted(p.stem for p in BENCHMARKS.glob("*.json"))
    assert saved == sorted(SCRIPTS), "each script saves one JSON file beside RESULTS.md"
    in_results = results.sections(results.Output().results.read_text(encoding="utf-8"))
    in_readme = results.sections(results.Output().readme.read_text(encoding="utf-8"))
    assert set(in_results) == set(in_readme) == {script(n).TITLE for n in SCRIPTS}
    for name in SCRIPTS:
        module, data = script(name), results.load(name)
        for found, heading in ((in_results, "##"), (in_readme, "###")):
            assert found[module.TITLE] == results.section(module.TITLE, module.render(data), data["measured_at"], heading), name


def test_a_changed_figure_is_caught(tmp_path: Path):
    data = results.load("job_ner")
    data["tuned"]["micro_f1"] += 0.1
    shown = results.sections(results.Output().results.read_text(encoding="utf-8"))["job-ner extraction"]
    assert shown != results.section("job-ner extraction", script("job_ner").render(data), data["measured_at"], "##")


def _published(out: Path, name: str) -> dict[str, Any]:
    module, data = script(name), json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
    for path, heading in ((out / "RESULTS.md", "##"), (out / "README.md", "###")):
        assert results.sections(path.read_text(encoding="utf-8"))[module.TITLE] == results.section(
            module.TITLE, module.render(data), data["measured_at"], heading)
    return data


def test_job_ner_quick_run_on_the_tiny_model(tiny_base: str, tmp_path: Path):
    rows = [{"prompt": f"We need {skill} and {years} years of experience.\n\n###\n\n",
             "completion": f" skills:['{skill}']\nexperience:['{years} years'] END"}
            for skill, years in zip(["python", "sql", "java", "excel", "go", "rust", "react", "linux", "c++", "scala"], range(1, 11))]
    data = tmp_path / "job-ner.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    script("job_ner").main(["--quick", "--base", tiny_base, "--data", str(data), "--out", str(tmp_path / "out")])
    found = _published(tmp_path / "out", "job_ner")
    assert found["quick"] and found["held_out_rows"] == 2 and found["hyperparameters"]["n_epochs"] == 1
    assert set(found["tuned"]) == set(found["untuned"]) == {"micro_f1", "micro_precision", "micro_recall"}


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
    script("clinc150").main(["--quick", "--data", str(folder), "--out", str(tmp_path / "out")])
    found = _published(tmp_path / "out", "clinc150")
    assert found["quick"] and found["ours"]["test_in_scope"] == 6 and found["frozen"]["test_out_of_scope"] == 3


def test_demo_router_run_on_a_small_bot(tmp_path: Path):
    registry = tmp_path / "models.yaml"
    registry.write_text(yaml.safe_dump(REGISTRY))
    script("demo_router").main(["--registry", str(registry), "--out", str(tmp_path / "out")])
    found = _published(tmp_path / "out", "demo_router")
    assert set(found["reports"]) == {"never", "always"}
    assert [found["reports"][h]["finetuned"] for h in ("never", "always")] == [False, True]


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
