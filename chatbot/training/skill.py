"""From a data file to a registered skill: check the data, fine-tune, register.

This is the recipe that ``chatbot train`` runs (and the server's jobs and the tests call).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatbot import adapters
from chatbot import registry as registry_io
from chatbot.errors import ChatbotError
from chatbot.files import file_sha256
from chatbot.registry import EpochRecord, Generation, Skill, TrainingRecord
from chatbot.skills import DEFAULT_SEPARATOR, DEFAULT_STOP, SkillKind, get_kind
from chatbot.runtime.base_models import DEFAULT_BASE, base_origin, token_counter
from chatbot.training.hyperparams import METRIC_ROWS, Hyperparameters
from chatbot.training.model_card import point_at_origin, write_model_card
from chatbot.training.trainer import EpochCallback, ProgressCallback, Scorer, train_lora


def check_or_fail(data: Path, valid: Path | None, count: Callable[[str], int], context: int, kind: str | None = None):  # noqa: ANN201 - data.check.Report
    """Run ``chatbot data check`` on the training data (tokens counted by *count*) and stop on errors."""
    from chatbot.data.check import check_file

    report = check_file(data, valid_path=valid, count_tokens=count, max_tokens=context, kind=kind)
    errors = [f for f in report.findings if f.severity == "error"]
    if errors:
        first = errors[0]
        where = f":{first.lines[0]}" if first.lines else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ChatbotError(f"{data}{where}: {first.message}{more}", hint=f"run `chatbot data check {data}` for the full report, `chatbot data fix` to repair")
    return report


def validation_scorer(kind: SkillKind, valid: list[tuple[str, str]], stop: str, count: Callable[[str], int]) -> Scorer:
    """The skill's metric on (at most METRIC_ROWS of) the validation pairs, from greedy answers of the model being trained."""
    rows = valid[:METRIC_ROWS]

    def score(model: Any, tokenizer: Any) -> float:
        import torch

        longest = max((count(c) for _, c in rows), default=16) + 8
        predictions = []
        model.eval()
        with torch.inference_mode():
            for prompt, _ in rows:
                ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"].to(model.device)
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=longest, do_sample=False,
                                     use_cache=True, pad_token_id=tokenizer.pad_token_id)
                predictions.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).split(stop)[0])
        model.train()
        return float(kind.score(predictions, [c for _, c in rows], [stop], [p for p, _ in rows])[kind.metric])

    return score


def train_skill(
    name: str,
    kind: str,
    data: str | os.PathLike[str],
    *,
    valid: str | os.PathLike[str] | None = None,
    base: str = DEFAULT_BASE,
    hyperparameters: Hyperparameters | None = None,
    registry_path: str | os.PathLike[str] | None = None,
    description: str = "",
    force: bool = False,
    routing: bool = True,
    keep_data: bool = False,
    keep_last: int = 1,
    fine_tuning_job: str | None = None,
    on_step: ProgressCallback | None = None,
    on_epoch: EpochCallback | None = None,
) -> Skill:
    """Check *data*, fine-tune a LoRA adapter for skill *name* and register it.

    With *routing* false the skill answers only when asked by name, until the router is told to use it.
    With *keep_data* the data files are copied into the adapter's folder (``data/``) and the record
    names the copies, so that routing never depends on a file that may be deleted (a server's uploads).
    The epoch registered is the one ``hyperparameters.select`` picks; the best and the *keep_last*
    last epochs are kept as checkpoints (``adapters/NAME/checkpoints/epoch-N``), listed in the record.
    The adapter is put in place with the registry (:mod:`chatbot.adapters`): a kill leaves the old
    adapter or the new one, never none, and the record always describes the adapter in place.
    """
    from chatbot.data.io import load_examples

    skill_kind = get_kind(kind)
    data_path, valid_path = Path(data), Path(valid) if valid else None
    registry = registry_io.load(registry_path, missing_ok=True)
    _check_new_name(registry, name, kind, force, "pick another name, or pass --force to retrain and replace it")
    count, context = token_counter(base)  # the base model's tokenizer, loaded once
    report = check_or_fail(data_path, valid_path, count, context, kind)
    examples = load_examples(data_path)
    valid_examples = load_examples(valid_path) if valid_path else []
    adapter_dir = (registry.path.parent if registry.path else Path.cwd()) / "adapters" / name
    staged = adapters.staging(adapter_dir)
    stop = report.stop or DEFAULT_STOP
    result = train_lora(
        [(e.prompt, e.completion) for e in examples], staged,
        base_model=base, hyperparameters=hyperparameters or Hyperparameters(),
        valid_examples=[(e.prompt, e.completion) for e in valid_examples],
        on_step=on_step, on_epoch=on_epoch, keep_last=keep_last,
        score=validation_scorer(skill_kind, [(e.prompt, e.completion) for e in valid_examples], stop, count),
    )
    data_file, valid_file = registry.relative(data_path), registry.relative(valid_path) if valid_path else None
    if keep_data:
        (staged / "data").mkdir()
        data_file = registry.relative(adapter_dir / "data" / ("train" + data_path.suffix))
        shutil.copyfile(data_path, staged / "data" / ("train" + data_path.suffix))
        if valid_path:
            valid_file = registry.relative(adapter_dir / "data" / ("valid" + valid_path.suffix))
            shutil.copyfile(valid_path, staged / "data" / ("valid" + valid_path.suffix))
    longest = max(count(e.completion) for e in examples)
    skill = Skill(
        name=name,
        kind=kind,
        routing=routing,
        description=description or f"{name}: {skill_kind.description}",
        base_model=base,
        adapter=registry.relative(adapter_dir),
        separator=report.separator or DEFAULT_SEPARATOR,
        stop=[stop],
        # room for the longest answer seen in training, and a little more
        generation=Generation(max_tokens=min(1024, max(16, math.ceil(longest * 1.25) + 8))),
        training=TrainingRecord(
            data_file=data_file,
            data_sha256=file_sha256(data_path),
            valid_file=valid_file,
            valid_sha256=file_sha256(valid_path) if valid_path else None,
            base_model=base,
            hyperparameters=result.hyperparameters.model_dump(),
            train_loss=result.train_loss,
            valid_loss=result.valid_loss,
            duration_s=result.duration_s,
            epochs=[EpochRecord(**vars(e), checkpoint=registry.relative(adapter_dir / "checkpoints" / f"epoch-{e.epoch}")
                                if e.epoch in result.checkpoints else None) for e in result.epochs],
            selected_epoch=result.selected_epoch,
            best_epoch=result.best_epoch,
            stopped_early=result.stopped_early,
            trained_tokens=result.trained_tokens,
            precision=result.precision,
            fine_tuning_job=fine_tuning_job,
        ),
    )
    for folder in [staged, *(staged / "checkpoints").glob("epoch-*")]:
        point_at_origin(folder, base)
    return _put_in_place(staged, adapter_dir, skill, registry,
                         merge=lambda previous: skill.keeping_hand_set(previous, description_given=bool(description)))


def _put_in_place(staged: Path, adapter_dir: Path, skill: Skill, registry: registry_io.Registry,
                  merge: Callable[[Skill | None], Skill] | None = None) -> Skill:
    """Write the model card, seal the *staged* adapter and put it in place together with *skill*'s entry in models.yaml.

    One locked step (see :mod:`chatbot.adapters`): a kill leaves the old adapter or the new one, always the one
    registered. *merge* makes the entry from the one it replaces (a retrained skill keeps its hand-set fields).
    """
    merge = merge or (lambda _previous: skill)
    write_model_card(staged, merge(registry.skills.get(skill.name)))
    assert skill.training is not None
    skill.training.adapter_id = adapters.seal(staged, skill=skill.name, base_model=base_origin(skill.base_model),
                                              data_sha256=skill.training.data_sha256)
    with registry_io.editing(registry.path) as current:  # read again: the file may have changed meanwhile
        replaced = adapters.install(staged, adapter_dir)
        current.skills[skill.name] = merge(current.skills.get(skill.name))
        registered = current.skills[skill.name]
    adapters.discard(replaced)  # the registry naming the new adapter is saved
    return registered


def _check_new_name(registry: registry_io.Registry, name: str, kind: str, force: bool, hint: str) -> None:
    """Validate *name* before any work, and refuse one that exists already unless *force*."""
    Skill(name=name, kind=kind)
    if name in registry.skills and not force:
        raise ChatbotError(f"{registry.path}: skill {name!r} exists already", hint=hint)


def register_checkpoint(name: str, epoch: int, new_name: str, registry_path: str | os.PathLike[str] | None = None, *,
                        force: bool = False) -> Skill:
    """Register the kept checkpoint of *name*'s epoch *epoch* as the skill *new_name* (its adapter copied, the rest of *name*'s settings)."""
    registry = registry_io.load(registry_path)
    source = registry.get(name)
    _check_new_name(registry, new_name, source.kind, force, "pick another name, or pass --force to replace it")
    record = source.training
    kept = {e.epoch: e for e in (record.epochs if record else []) if e.checkpoint}
    if epoch not in kept or record is None:
        raise ChatbotError(f"skill {name!r} has no checkpoint of epoch {epoch}",
                           hint=f"kept: {', '.join(map(str, sorted(kept))) or 'none (train with --valid to keep checkpoints)'}")
    adapter_dir = (registry.path.parent if registry.path else Path.cwd()) / "adapters" / new_name
    staged = adapters.staging(adapter_dir)
    shutil.copytree(registry.resolve(kept[epoch].checkpoint), staged)
    main = registry.adapter_path(source)
    for tokenizer_file in main.glob("*token*") if main else []:  # the tokenizer saved beside the adapter
        shutil.copy2(tokenizer_file, staged / tokenizer_file.name)
    skill = source.model_copy(update={"name": new_name, "routing": False, "adapter": registry.relative(adapter_dir), "training": record.model_copy(update={
        "selected_epoch": epoch, "epochs": [e.model_copy(update={"checkpoint": None}) for e in record.epochs]})}, deep=True)
    skill.description = f"{source.description} (epoch {epoch} of {name})"
    return _put_in_place(staged, adapter_dir, skill, registry)
