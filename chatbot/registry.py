"""The skill registry, ``models.yaml``: its schema, and atomic load / save / register.

Where the file is: ``--registry PATH``, else ``$CHATBOT_REGISTRY``, else ``./models.yaml``.
Adapter paths are stored relative to the registry file's folder so a project can move.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import yaml
from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chatbot import adapters
from chatbot.defaults import DATA_DIR, DEFAULT_ENCODER, REGISTRY_ENV, REGISTRY_FILE
from chatbot.errors import ChatbotError
from chatbot.files import atomic_write_text
from chatbot.runtime.base_models import DEFAULT_BASE
from chatbot.skills.replies import placeholders
from chatbot.skills import DEFAULT_SEPARATOR, DEFAULT_STOP, KIND_NAMES, KINDS, SkillKind

SkillKindName = Literal[KIND_NAMES]  # type: ignore[valid-type]  # the names of chatbot.skills.KINDS
HAND_SET = ("routing_examples", "history_turns", "ground_entities", "description", "routing", "reply", "ask_for", "ask_as")  # what retraining keeps
log = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Generation(BaseModel):
    """Generation settings used when the skill answers."""

    model_config = ConfigDict(extra="forbid")
    max_tokens: int = Field(default=128, ge=1, le=4096)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)


class EpochRecord(BaseModel):
    """One epoch of a training: its losses, the metric when measured, and its checkpoint when kept."""

    epoch: int
    step: int = Field(description="the optimizer step the epoch ended on")
    train_loss: float
    valid_loss: float | None = None
    metric: float | None = Field(default=None, description="the skill's metric on the validation file (select: best-metric)")
    checkpoint: str | None = Field(default=None, description="its adapter, relative to the registry file, when kept")


class TrainingRecord(BaseModel):
    """How the skill was trained, so a result can be reproduced and compared."""

    model_config = ConfigDict(extra="allow")
    data_file: str
    data_sha256: str
    valid_file: str | None = None
    valid_sha256: str | None = None
    base_model: str
    hyperparameters: dict[str, Any]
    train_loss: list[float] = Field(default_factory=list, description="mean training loss per epoch")
    valid_loss: list[float] = Field(default_factory=list, description="validation loss per epoch")
    metrics: dict[str, Any] = Field(default_factory=dict, description="the last `chatbot eval` result")
    trained_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    duration_s: float = 0.0
    epochs: list[EpochRecord] = Field(default_factory=list, description="each epoch run")
    selected_epoch: int | None = Field(default=None, description="the epoch whose adapter is registered")
    best_epoch: int | None = Field(default=None, description="the best epoch by the selection's measure, with validation data")
    stopped_early: bool = False
    trained_tokens: int = Field(default=0, description="tokens of the training examples times the epochs")
    precision: str | None = Field(default=None, description="how the base ran while training, e.g. fp32 on cpu")
    adapter_id: str | None = Field(default=None, description="the id in the adapter folder's chatbot.json: which adapter this record is of")
    fine_tuning_job: str | None = Field(default=None, description="the server's fine-tuning job that trained it")


class Skill(BaseModel):
    """One fine-tuned model plus its prompt format."""

    model_config = ConfigDict(extra="forbid")
    name: str
    kind: SkillKindName
    description: str = ""
    backend: Literal["local", "openai"] = Field(default="local", description="local: transformers + peft here; openai: the openai SDK against a server")
    base_model: str = DEFAULT_BASE
    adapter: str | None = Field(default=None, description="peft adapter folder, relative to the registry file")
    model: str | None = Field(default=None, description="openai: the (fine-tuned) model id on the server")
    base_url: str | None = Field(default=None, description="openai: the server's /v1 URL (default: OpenAI's)")
    api_key_env: str = Field(default="OPENAI_API_KEY", description="openai: the environment variable holding the API key")
    api: Literal["completions", "chat"] = Field(default="completions", description="openai: legacy completions (prompt + separator) or chat completions")
    separator: str = DEFAULT_SEPARATOR
    stop: list[str] = Field(default_factory=lambda: [DEFAULT_STOP])
    generation: Generation = Field(default_factory=Generation)
    routing: bool = Field(default=True, description="the router sends messages to this skill; false: it answers only when asked by name "
                          "(a fine-tuning job's model starts so, unless the server routes new models)")
    routing_examples: list[str] = Field(default_factory=list, description="messages this skill should take; drawn from its training prompts when empty")
    reply: str | None = Field(default=None, description="classify / extract: the reply, a template filled from the label and the session's "
                              "slots, e.g. 'Booked: your {bike} on {day}.' (default: the label or the entities as parsed)")
    ask_for: dict[str, str] = Field(default_factory=dict, description="extract: entity type -> the question asked while the session has no "
                                    "value for it; the next message fills it")
    ask_as: str | None = Field(default=None, description="how the bot offers this skill when it asks the user to choose, e.g. "
                               "'book a repair' (default: its description)")
    history_turns: int = Field(default=0, ge=0, le=50, description="earlier turns of the conversation put into the prompt")
    ground_entities: bool = Field(default=True, description="extract: drop values that do not occur in the input")
    training: TrainingRecord | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use letters, digits, '-', '_' or '.', at most 64 characters")
        return value

    @model_validator(mode="after")
    def _replies_fit_the_kind(self) -> Skill:
        if (self.reply or self.ask_for) and self.skill_kind.streams:
            raise ValueError(f"reply and ask_for are for classify and extract skills, not {self.kind} (its answer is the reply)")
        if self.ask_for and self.kind != "extract":
            raise ValueError("ask_for is for extract skills: it asks for entities")
        if self.reply:
            try:
                placeholders(self.reply)
            except ChatbotError as exc:
                raise ValueError(exc.message) from None
        return self

    @model_validator(mode="after")
    def _hosted_needs_a_model(self) -> Skill:
        if self.backend == "openai" and not self.model:
            raise ValueError("a skill with backend: openai needs `model:` (the model id on the server)")
        return self

    @property
    def model_id(self) -> str:
        """The model a request names: the hosted model id, or the local base model."""
        return self.model if self.backend == "openai" and self.model else self.base_model

    @property
    def skill_kind(self) -> SkillKind:
        return KINDS[self.kind]

    def keeping_hand_set(self, previous: Skill | None, *, description_given: bool) -> Skill:
        """This newly trained skill, with the fields of *previous* that a user sets by hand (:data:`HAND_SET`).

        Retraining a skill, locally or on a server, must not lose them; the description is kept
        unless a new one was given.
        """
        if previous is None:
            return self
        kept = [key for key in HAND_SET if key != "description" or not description_given]
        return self.model_copy(update={key: getattr(previous, key) for key in kept})


DEFAULT_FALLBACK_REPLY = "Sorry, I can't help with that."


class RouterConfig(BaseModel):
    """How messages are routed to skills, and when none fits."""

    model_config = ConfigDict(extra="forbid")
    encoder: str = Field(default=DEFAULT_ENCODER, description="sentence encoder: a name known to the router or a local folder")
    threshold: float | None = Field(default=None, description="fixed out-of-scope threshold; calibrated when the router is built if unset")
    out_of_scope: list[str] = Field(default_factory=list, description="messages no skill should take, used to calibrate the threshold")
    out_of_scope_file: str | None = Field(default=None, description="more such messages: a text file (one per line) or JSONL with a `text` field, relative to the registry")
    examples_per_skill: int = Field(default=100, ge=1, description="training prompts drawn per skill when it has no routing_examples")
    ask: bool = Field(default=True, description="when the router is unsure between two skills, the bot asks the user to choose "
                      "(the margin is calibrated on held-out examples, like the threshold); false: it always takes the best")
    margin: float | None = Field(default=None, ge=0, le=2, description="fixed margin for asking; calibrated when the router is built if unset")


class Fallback(BaseModel):
    """What answers when no skill fits: a fixed reply, or a fallback skill."""

    model_config = ConfigDict(extra="forbid")
    reply: str = DEFAULT_FALLBACK_REPLY
    skill: str | None = Field(default=None, description="a registered skill that answers out-of-scope messages instead of the reply")


class Registry(BaseModel):
    """The whole ``models.yaml``."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = 1
    router: RouterConfig = Field(default_factory=RouterConfig)
    fallback: Fallback = Field(default_factory=Fallback)
    skills: dict[str, Skill] = Field(default_factory=dict)
    path: Path | None = Field(default=None, exclude=True)

    def get(self, name: str) -> Skill:
        try:
            return self.skills[name]
        except KeyError:
            known = ", ".join(self.skills) or "none yet"
            raise ChatbotError(f"{self.path}: no skill named {name!r} (registered: {known})", hint="see `chatbot registry list`") from None

    def resolve(self, relative: str) -> Path:
        """A path stored in the file, made absolute against the registry's folder."""
        return ((self.path.parent if self.path else Path.cwd()) / relative).resolve()

    def adapter_path(self, skill: Skill) -> Path | None:
        return self.resolve(skill.adapter) if skill.adapter else None

    def relative(self, path: Path) -> str:
        """*path* as stored in the file: relative to the registry's folder when inside it."""
        base = (self.path.parent if self.path else Path.cwd()).resolve()
        try:
            return str(Path(path).resolve().relative_to(base))
        except ValueError:
            return str(Path(path).resolve())


def registry_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    return Path(explicit or os.environ.get(REGISTRY_ENV) or REGISTRY_FILE)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at *loc* (or of its nearest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


MAX_YAML_DEPTH = 32  # models.yaml nests 4 levels (skills.NAME.training.metrics); deeper is a mistake or an attack
MAX_YAML_VALUES = 100_000  # values once aliases are expanded: a "billion laughs" file expands to far more


class _Loader(yaml.SafeLoader):
    """The safe loader, with a value it cannot build (a date that does not exist, an integer of 5,000
    digits) reported as a YAML error at the value's line instead of escaping as a ValueError."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, TypeError) as exc:
            raise yaml.constructor.ConstructorError(None, None, f"cannot read this value: {exc}", node.start_mark) from None


def key_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``skills.faq.stop[0]``: a location in the file as a user reads it (odd keys quoted)."""
    text = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif isinstance(part, str) and part.startswith("[") and part.endswith("]"):
            text += part  # pydantic's "[key]": the key itself is wrong
        elif isinstance(part, str) and re.fullmatch(r"[\w.-]+", part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return printable(text) or "(the whole file)"


def printable(text: str) -> str:
    """*text* with lone surrogates written as escapes, so that a message naming it can be printed."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def read_yaml(file: Path) -> tuple[yaml.Node | None, Any]:
    """The node tree (for lines, see :func:`line_of`) and the data of *file*; ChatbotError naming the line, and the key where there is one.

    Safe on any input (the limits of :func:`_check_nodes`); models.yaml and conversation test files are read with it.
    """
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ChatbotError(f"{file}: cannot read it ({exc.strerror or exc})") from None
    text = _decode_yaml(file, raw)
    try:
        _check_depth(file, text)
        loader = _Loader(text)  # the reader checks every character here
    except yaml.YAMLError as exc:
        raise _yaml_error(file, text, exc) from None
    try:
        try:
            root = loader.get_single_node()
        except RecursionError:
            raise ChatbotError(f"{file}:{loader.get_mark().line + 1}: nested too deeply (more than {MAX_YAML_DEPTH} levels)", hint="fix the file") from None
        if root is None:
            return None, {}
        _check_nodes(file, root)
        try:
            return root, loader.construct_document(root)
        except yaml.constructor.ConstructorError as exc:  # a value the tree holds: name its key
            raise _yaml_error(file, text, exc, _path_at(root, exc.problem_mark)) from None
    except yaml.YAMLError as exc:
        raise _yaml_error(file, text, exc) from None
    finally:
        loader.dispose()


def _path_at(root: yaml.Node, mark: Any) -> str | None:
    """The key path of the node that starts at *mark* (the tree is small: :func:`_check_nodes` passed it)."""
    if mark is None:
        return None
    stack: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, ())]
    found: tuple[Any, ...] | None = None
    while stack:
        node, loc = stack.pop()
        if node.start_mark.index == mark.index and (found is None or len(loc) > len(found)):
            found = loc  # the deepest: a block mapping starts where its first key does
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*loc, index)) for index, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else "?"
                stack.extend(((key, (*loc, name)), (value, (*loc, name))))
    return None if found is None else key_path(found)


def _yaml_error(file: Path, text: str, exc: yaml.YAMLError, key: str | None = None) -> ChatbotError:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        char = chr(exc.character) if isinstance(exc.character, int) else exc.character
        problem = f"the character {char!r} is not allowed in YAML"
        return ChatbotError(f"{file}:{line}: invalid YAML: {printable(problem)}", hint="remove it, or write it as an escape in a double-quoted string")
    mark = getattr(exc, "problem_mark", None)
    where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
    problem = printable(getattr(exc, "problem", None) or str(exc))
    if key is not None:
        return ChatbotError(f"{file}{where}: {key}: {problem[:160]}", hint="fix that key")
    return ChatbotError(f"{file}{where}: invalid YAML: {problem[:160]}", hint="fix the file")


def _decode_yaml(file: Path, raw: bytes) -> str:
    """The text of *raw*: UTF-8, or UTF-16/32 with a byte order mark, as YAML allows; errors name the line."""
    for bom, codec in ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if raw.startswith(bom):
            try:
                return raw.decode(codec)
            except UnicodeDecodeError as exc:
                line = raw[: exc.start].decode(codec, errors="replace").count("\n") + 1
                raise ChatbotError(f"{file}:{line}: invalid {codec.upper()} text ({exc.reason})", hint="save it as UTF-8") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ChatbotError(f"{file}:{line}:{col}: not UTF-8 text (byte 0x{raw[exc.start]:02x})", hint="save it as UTF-8") from None


def _check_nodes(file: Path, root: yaml.Node) -> None:
    """Refuse, before building anything, what would make the values huge or unprintable.

    Nesting deeper than :data:`MAX_YAML_DEPTH`, more than :data:`MAX_YAML_VALUES` values once aliases
    are expanded (a "billion laughs" file, or an alias to itself), and lone surrogates (``"\\ud800"``
    escapes: half of a character, which no file or terminal can take). The walk follows the expanded
    tree, so it stops as soon as a limit is passed.
    """
    stack: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, ())]
    seen = 0
    while stack:
        node, loc = stack.pop()
        seen += 1
        problem = hint = None
        if seen > MAX_YAML_VALUES:
            problem = f"more than {MAX_YAML_VALUES:,} values once its aliases are expanded"
            hint = "write the values out instead of repeating aliases (*name)"
        elif len(loc) > MAX_YAML_DEPTH:
            problem, hint = f"nested more than {MAX_YAML_DEPTH} levels deep", "fix the file"
        elif isinstance(node, yaml.ScalarNode):
            if _SURROGATE.search(node.value):
                problem = "a lone surrogate such as \\ud800 is half of a character, not valid Unicode"
                hint = "write the character itself, or a pair of escapes"
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*loc, index)) for index, item in reversed(list(enumerate(node.value))))
        elif isinstance(node, yaml.MappingNode):
            for key, value in reversed(node.value):
                name = key.value if isinstance(key, yaml.ScalarNode) else "?"
                stack.append((value, (*loc, name)))
                stack.append((key, (*loc, name)))
        if problem is not None:
            raise ChatbotError(f"{file}:{node.start_mark.line + 1}: {key_path(loc)}: {problem}", hint=hint)


def _check_depth(file: Path, text: str) -> None:
    """Refuse nesting deeper than :data:`MAX_YAML_DEPTH`, from the parser's events, before the (recursive)
    composer takes a while to fail on a file thousands of levels deep; the error names the key path."""
    frames: list[list[Any]] = []  # per open mapping or sequence: [is a mapping, children done, last key]
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.NodeEvent):  # a scalar, an alias, or the start of a collection
            if frames and frames[-1][0] and frames[-1][1] % 2 == 0:  # a key of the mapping
                frames[-1][2] = event.value if isinstance(event, yaml.ScalarEvent) else "?"
            if isinstance(event, yaml.CollectionStartEvent):
                if len(frames) >= MAX_YAML_DEPTH:
                    where = key_path([frame[2] if frame[0] else frame[1] for frame in frames])
                    raise ChatbotError(f"{file}:{event.start_mark.line + 1}: {where}: nested more than {MAX_YAML_DEPTH} levels deep", hint="fix the file")
                frames.append([isinstance(event, yaml.MappingStartEvent), 0, None])
                continue
        elif isinstance(event, yaml.CollectionEndEvent):
            frames.pop()
        else:
            continue
        if frames:  # a node ended: count it in its parent
            frames[-1][1] += 1


_SURROGATE = re.compile("[\ud800-\udfff]")


def load(path: str | os.PathLike[str] | None = None, *, missing_ok: bool = False) -> Registry:
    """Load and validate the registry; errors name the file, the line and the key path.

    Whatever the file holds, the only exception is a ChatbotError (see :func:`read_yaml`).
    """
    file = registry_path(path)
    if not file.exists():
        if missing_ok:
            return Registry(path=file)
        raise ChatbotError(f"{file}: no such registry", hint=f"train a skill with `chatbot train` to create it, or pass --registry / set {REGISTRY_ENV}")
    if file.is_dir():
        raise ChatbotError(f"{file}: is a directory, not a registry file", hint="pass the path of models.yaml")
    root, data = read_yaml(file)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        line = root.start_mark.line + 1 if root is not None else 1
        kind = {list: "a list", str: "text"}.get(type(data), type(data).__name__)
        raise ChatbotError(f"{file}:{line}: the registry must be a mapping with a `skills:` key, not {kind}")
    skills = data.get("skills")
    for name, skill in (skills.items() if isinstance(skills, dict) else ()):
        if isinstance(skill, dict):
            skill.setdefault("name", name)
    try:
        registry = Registry.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        loc = tuple(errors[0]["loc"])
        line = _line_of(root, loc)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ChatbotError(f"{file}:{line}: {key_path(loc)}: {printable(errors[0]['msg'])}{more}", hint="fix that key") from None
    for name, skill in registry.skills.items():
        if skill.name != name:
            where = f"{file}:{_line_of(root, ('skills', name, 'name'))}: {key_path(('skills', name, 'name'))}"
            raise ChatbotError(f"{where}: {skill.name!r} differs from its key {name!r}")
    if registry.fallback.skill and registry.fallback.skill not in registry.skills:
        line = _line_of(root, ("fallback", "skill"))
        raise ChatbotError(f"{file}:{line}: fallback.skill: no skill named {registry.fallback.skill!r}", hint="name a registered skill or remove the key")
    registry.path = file
    return registry


class _Dumper(yaml.SafeDumper):
    """Writes strings holding newlines as one double-quoted line (``"\\n\\n###\\n\\n"``)."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if "\n" in value or value != value.strip() else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def save(registry: Registry, path: str | os.PathLike[str] | None = None) -> Path:
    """Write the registry atomically (see :func:`chatbot.files.atomic_write`): the old file or the new, never a mix."""
    file = registry_path(path or registry.path)
    file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(file, to_yaml(registry))
    registry.path = file
    return file


def to_yaml(registry: Registry) -> str:
    """The text of ``models.yaml`` for *registry*."""
    data = registry.model_dump(mode="json", exclude_none=True)
    for skill in data["skills"].values():
        skill.pop("name", None)
    text = "# The skills of this bot. Edit by hand or with `chatbot train` / `chatbot registry`.\n"
    return text + yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


@contextmanager
def editing(path: str | os.PathLike[str] | None = None, *, missing_ok: bool = True) -> Iterator[Registry]:
    """Load the registry, let the caller change it, and save it, all under a lock on the file.

    Two writers (a server's fine-tuning worker, a ``chatbot`` command) thus never lose each
    other's change. Nothing is saved when the block raises or changes nothing.
    """
    file = registry_path(path)
    lock = file.parent / DATA_DIR / f"{file.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock):
        registry = load(file, missing_ok=missing_ok)
        _repair_adapters(registry)
        before = registry.model_dump()
        yield registry
        if registry.model_dump() != before:
            save(registry, file)


def _repair_adapters(registry: Registry) -> None:
    """Finish or undo an adapter swap that a kill interrupted (see :mod:`chatbot.adapters`); under the lock."""
    for skill in registry.skills.values():
        folder = registry.adapter_path(skill)
        if folder is not None and adapters.replaced(folder).exists():
            done = adapters.repair(folder, skill.training.adapter_id if skill.training else None)
            if done:
                log.warning("%s", done)


def repair_adapters(path: str | os.PathLike[str] | None = None) -> None:
    """Make every local skill's adapter the one its record names, after a kill during a training; cheap when there is nothing to do."""
    registry = load(path, missing_ok=True)
    if any((folder := registry.adapter_path(s)) is not None and adapters.replaced(folder).exists() for s in registry.skills.values()):
        with editing(path):
            pass


def register(skill: Skill, path: str | os.PathLike[str] | None = None) -> Registry:
    """Add or replace *skill* in the registry at *path*, creating the file when missing."""
    with editing(path) as registry:
        registry.skills[skill.name] = skill
    return registry


def remove(name: str, path: str | os.PathLike[str] | None = None) -> Skill:
    with editing(path, missing_ok=False) as registry:
        skill = registry.get(name)
        del registry.skills[name]
    return skill
