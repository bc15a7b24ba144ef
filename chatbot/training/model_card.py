"""An adapter that travels: its ``adapter_config.json`` names the base by where it came from, and a model card says how it was made.

peft writes ``base_model_name_or_path`` as the folder the base was loaded from, which for the
bundled base is this machine's cache; :func:`point_at_origin` puts the Hugging Face id there instead
(a local base keeps its folder). :func:`write_model_card` writes ``README.md`` in the Hugging Face
format from the skill's training record; ``chatbot eval`` writes it again with the metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from chatbot.files import atomic_write_text
from chatbot.registry import Skill
from chatbot.runtime.base_models import base_origin, base_weights


def point_at_origin(folder: Path, base: str) -> None:
    """Make the adapter's config name its base as another machine finds it (see :func:`base_origin`)."""
    config_file = folder / "adapter_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_origin(base)
    atomic_write_text(config_file, json.dumps(config, indent=2, sort_keys=True) + "\n")


def write_model_card(folder: Path, skill: Skill) -> None:
    """``README.md`` in *folder*: front matter for the Hub, then the prompt format, the data, the settings and the results."""
    record = skill.training
    origin = base_origin(skill.base_model)
    front = {"base_model": origin, "library_name": "peft", "pipeline_tag": "text-generation",
             "tags": ["chatbot", "lora", f"skill-{skill.kind}"]}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "", f"# {skill.name}", "",
             skill.description or f"A {skill.kind} skill.", "",
             "A LoRA adapter made with [chatbot](https://pypi.org/project/chatbot/) `train` "
             "(prompt/completion pairs in the legacy fine-tuning format).", "",
             "## Use", "",
             f"- base model: `{origin}` ({base_weights(skill.base_model)})",
             f"- prompt: the message, then the separator `{json.dumps(skill.separator)}`",
             f"- completion: starts with a space, ends with the stop sequence `{json.dumps(skill.stop)}`",
             f"- generation: {skill.generation.model_dump()}", "",
             "```python",
             "from peft import PeftModel",
             "from transformers import AutoModelForCausalLM, AutoTokenizer",
             f'base = AutoModelForCausalLM.from_pretrained("{origin}")',
             'model = PeftModel.from_pretrained(base, "path/to/this/folder")',
             "```", "",
             f"vLLM: `vllm serve {origin} --enable-lora --lora-modules {skill.name}=path/to/this/folder`", ""]
    if record is not None:
        lines += ["## Training", "",
                  f"- data: `{record.data_file}`, sha256 `{record.data_sha256}`",
                  f"- validation: `{record.valid_file}`, sha256 `{record.valid_sha256}`" if record.valid_file else "- validation: none",
                  f"- hyperparameters: {json.dumps(record.hyperparameters, sort_keys=True)}",
                  f"- precision: {record.precision or 'not recorded'}",
                  f"- trained tokens: {record.trained_tokens}" if record.trained_tokens else "- trained tokens: not recorded",
                  f"- training loss per epoch: {record.train_loss}",
                  f"- validation loss per epoch: {record.valid_loss}",
                  f"- this adapter is epoch {record.selected_epoch} ({record.hyperparameters.get('select', 'last')}; best epoch "
                  f"{record.best_epoch}{', stopped early' if record.stopped_early else ''}); checkpoints kept in `checkpoints/`: "
                  f"{', '.join(f'epoch-{e.epoch}' for e in record.epochs if e.checkpoint) or 'none'}",
                  f"- trained at {record.trained_at.isoformat()} in {record.duration_s} s", ""]
        if record.metrics:
            lines += ["## Evaluation", "", *(f"- {key}: {value}" for key, value in record.metrics.items()), ""]
    atomic_write_text(folder / "README.md", "\n".join(lines))
