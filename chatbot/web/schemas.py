"""The bodies of the OpenAI-compatible API: what the endpoints accept and, in OpenAI's shapes, what they answer.

The response models declare every field the official ``openai`` client requires (tests/test_web_schemas.py
checks them against its types); they are what ``/docs`` shows and what the streamed chunks are made of.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from chatbot.backends.base import TokenLogprobs
from chatbot.conversation.records import Timings
from chatbot.defaults import MAX_CHOICES, MAX_MESSAGES, MAX_PROMPT_CHARS
from chatbot.routing.router import Candidate
from chatbot.runtime.base_models import DEFAULT_BASE
from chatbot.skills import DEFAULT_KIND, KIND_NAMES
from chatbot.web.errors import APIError

T = TypeVar("T")
SEED_RANGE = {"ge": -(2**63), "le": 2**64 - 1}  # what a torch generator takes


def _unicode(value: str) -> str:
    """Text that can be stored and sent on: a lone surrogate (``"\\ud800"`` in JSON) is refused."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode text (a lone surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(_unicode)]
FinishReason = Literal["stop", "length"]
JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]

# -- completions: requests ---------------------------------------------------------------------------


class ContentPart(BaseModel):
    """A part of a message's content: text is read, other parts (images, audio) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    type: Text
    text: Text | None = None

    @model_validator(mode="after")
    def _text_has_text(self) -> ContentPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a part of type text needs a `text` string")
        return self


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Text | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class Sampling(BaseModel):
    """What both completion calls share."""

    model_config = ConfigDict(extra="allow")  # other OpenAI parameters are accepted and ignored
    model: str
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: Text | list[Text] | None = None
    seed: int | None = Field(default=None, **SEED_RANGE)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: Text | None = Field(default=None, max_length=200, description="the session, for model `chatbot`")

    def overrides(self) -> dict[str, Any]:
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        if stop is not None and (len(stop) > 4 or not all(stop)):
            raise APIError(400, "stop: up to 4 non-empty sequences", param="stop")
        values = {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p, "stop": stop, "seed": self.seed}
        return {k: v for k, v in values.items() if v is not None}


class ChatCompletionRequest(Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=4096)
    n: int = Field(default=1, ge=1, le=1, description="one choice: a routed reply is one turn of a conversation")

    @model_validator(mode="after")
    def _not_too_long(self) -> ChatCompletionRequest:
        if sum(len(m.text()) for m in self.messages) > MAX_PROMPT_CHARS:
            raise ValueError(f"messages: more than {MAX_PROMPT_CHARS:,} characters in all")
        return self


class CompletionRequest(Sampling):
    prompt: Annotated[Text, Field(max_length=MAX_PROMPT_CHARS)] | list[Annotated[Text, Field(max_length=MAX_PROMPT_CHARS)]]
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=5)
    suffix: str | None = None

    @model_validator(mode="after")
    def _few_enough_choices(self) -> CompletionRequest:
        prompts = 1 if isinstance(self.prompt, str) else len(self.prompt)
        if prompts * self.n > MAX_CHOICES:
            raise ValueError(f"prompts × n is {prompts * self.n}: at most {MAX_CHOICES} completions a request")
        return self


# -- models and completions: responses ---------------------------------------------------------------


class Model(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    kind: str | None = Field(default=None, description="a skill's kind, or `base` for a base model fine-tuning jobs start from (absent for model `chatbot`)")
    description: str | None = Field(default=None, description="what the skill does (absent for model `chatbot`)")
    parent: str | None = Field(default=None, description="a skill's base model (listed too), as vLLM names a LoRA model's base")
    root: str | None = Field(default=None, description="where the base model comes from: its Hugging Face id, or a local folder")


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens)


class ChatbotInfo(BaseModel):
    """Our extra ``chatbot`` field: which skill answered, and why."""

    skill: str | None = Field(description="the skill that answered; None when the fallback reply did")
    score: float = Field(description="the router's score for the chosen skill")
    fallback: bool
    session_id: str | None
    turn: int | None
    label: str | None
    entities: dict[str, list[str]]
    runners_up: list[Candidate]
    latency: Timings


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str = Field(description="changes when the models or settings behind the answers change")
    choices: list[ChatChoice]
    usage: Usage
    chatbot: ChatbotInfo


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    finish_reason: FinishReason | None
    logprobs: None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed chat completion; only the fields given are sent."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChunkChoice]
    usage: Usage | None = Field(default=None, description="in the last chunk, with `stream_options.include_usage`")
    chatbot: ChatbotInfo | None = Field(default=None, description="in the chunk with the finish reason")


class TextChoice(BaseModel):
    index: int
    text: str
    logprobs: TokenLogprobs | None
    finish_reason: FinishReason | None


class TextCompletionChunk(BaseModel):
    """One server-sent event of a streamed text completion."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[TextChoice]
    usage: Usage | None = Field(default=None, description="in the last chunk, with `stream_options.include_usage`")


class TextCompletion(TextCompletionChunk):
    usage: Usage


# -- files and fine-tuning: requests -----------------------------------------------------------------


class JobHyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_epochs: Annotated[int, Field(ge=1, le=50)] | Literal["auto"] = "auto"
    batch_size: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = "auto"
    learning_rate_multiplier: Annotated[float, Field(gt=0, le=10)] | Literal["auto"] = "auto"
    prompt_loss_weight: float = Field(default=0.01, ge=0, le=1, description="an extension: the weight of prompt tokens in the loss")


class SupervisedMethod(BaseModel):
    model_config = ConfigDict(extra="allow")
    hyperparameters: JobHyperparameters | None = None


class JobMethod(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["supervised"] = "supervised"
    supervised: SupervisedMethod | None = None


class CreateJob(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(default=DEFAULT_BASE, description="the base model: a bundled alias, a local folder or a Hugging Face id")
    training_file: str
    validation_file: str | None = None
    hyperparameters: JobHyperparameters | None = None
    method: JobMethod | None = None
    suffix: Text | None = Field(default=None, max_length=64)
    seed: int | None = Field(default=None, **SEED_RANGE)
    metadata: dict[Text, Annotated[Text, Field(max_length=512)]] | None = Field(default=None, description=f'`{{"kind": "{"|".join(KIND_NAMES)}"}}` picks the skill kind (default {DEFAULT_KIND})')


# -- files and fine-tuning: responses ----------------------------------------------------------------


class Page(BaseModel, Generic[T]):
    object: Literal["list"]
    data: list[T]
    has_more: bool


class FileObject(BaseModel):
    id: str
    object: Literal["file"]
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"]
    status_details: str | None


class FileList(Page[FileObject]):
    pass


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"]
    deleted: bool


class Hyperparameters(BaseModel):
    """As asked (``auto`` where not given), then as trained with once the job has succeeded."""

    model_config = ConfigDict(extra="allow")
    n_epochs: int | Literal["auto"] | None = None
    batch_size: int | Literal["auto"] | None = None
    learning_rate_multiplier: float | int | Literal["auto"] | None = None
    prompt_loss_weight: float | int | None = None


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class FineTuningJob(BaseModel):
    """A job as stored: the endpoints answering one send the fields it has (all of them, for a job made here)."""

    model_config = ConfigDict(extra="allow")
    id: str
    object: Literal["fine_tuning.job"]
    created_at: int
    finished_at: int | None = None
    model: str
    fine_tuned_model: str | None = None
    organization_id: str
    result_files: list[str]
    status: JobStatus
    training_file: str
    validation_file: str | None = None
    hyperparameters: Hyperparameters
    trained_tokens: int | None = None
    error: JobError | None = None
    seed: int
    user_provided_suffix: str | None = None
    estimated_finish: int | None = None
    integrations: list[dict[str, Any]] | None = None
    method: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None


class JobList(Page[FineTuningJob]):
    pass


class JobEvent(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"]
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"]
    data: dict[str, Any]


class JobEventList(Page[JobEvent]):
    pass


class Checkpoint(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"]
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: dict[str, Any] = Field(description="train_loss, valid_loss")
    step_number: int


class CheckpointList(Page[Checkpoint]):
    pass
