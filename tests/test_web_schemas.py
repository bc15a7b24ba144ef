"""Our response models against the official openai client's types: the fields they declare, and live answers."""

from __future__ import annotations

import json
from typing import Any, Literal, get_args, get_origin

import httpx
import openai
import pytest
import test_fine_tuning_api
import test_web
from openai.types import Completion, CompletionUsage, FileDeleted, FileObject, Model, completion_choice
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage, chat_completion, chat_completion_chunk
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent, fine_tuning_job
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint
from pydantic import BaseModel, ValidationError, create_model
from test_fine_tuning_api import ROWS, jsonl, wait_for

from chatbot.backends.base import TokenLogprobs
from chatbot.bot import Bot
from chatbot.web import schemas

# The servers of the web and fine-tuning tests, as fixtures of this module too (module-scoped: it gets its own).
scripted_server = test_web.server  # the bot on a scripted backend
tuning_server = test_fine_tuning_api.server  # the bot on a tiny real model, with the fine-tuning worker

PAIRS = [
    (schemas.Model, Model),
    (schemas.Usage, CompletionUsage),
    (schemas.ChatCompletion, ChatCompletion),
    (schemas.ChatChoice, chat_completion.Choice),
    (schemas.AssistantMessage, ChatCompletionMessage),
    (schemas.ChatCompletionChunk, ChatCompletionChunk),
    (schemas.ChunkChoice, chat_completion_chunk.Choice),
    (schemas.ChunkDelta, chat_completion_chunk.ChoiceDelta),
    (schemas.TextCompletion, Completion),
    (schemas.TextCompletionChunk, Completion),
    (schemas.TextChoice, completion_choice.CompletionChoice),
    (TokenLogprobs, completion_choice.Logprobs),
    (schemas.FileObject, FileObject),
    (schemas.FileDeleted, FileDeleted),
    (schemas.FineTuningJob, FineTuningJob),
    (schemas.Hyperparameters, fine_tuning_job.Hyperparameters),
    (schemas.JobError, fine_tuning_job.Error),
    (schemas.JobEvent, FineTuningJobEvent),
    (schemas.Checkpoint, FineTuningJobCheckpoint),
]


def missing(ours: type[BaseModel], sdk: type[BaseModel]) -> list[str]:
    """The fields *sdk* requires that *ours* does not declare."""
    return [name for name, field in sdk.model_fields.items() if field.is_required() and name not in ours.model_fields]


def constants(model: type[BaseModel]) -> dict[str, tuple[Any, ...]]:
    """The fields typed as one literal value (``object``, a message's ``role``): their value."""
    return {name: get_args(field.annotation) for name, field in model.model_fields.items()
            if get_origin(field.annotation) is Literal and len(get_args(field.annotation)) == 1}


@pytest.mark.parametrize(("ours", "sdk"), PAIRS, ids=[f"{ours.__name__}-{sdk.__name__}" for ours, sdk in PAIRS])
def test_our_models_declare_every_field_the_sdk_requires(ours: type[BaseModel], sdk: type[BaseModel]) -> None:
    assert missing(ours, sdk) == []
    for name, value in constants(sdk).items():
        assert constants(ours).get(name) == value, name


def test_the_check_sees_a_dropped_field() -> None:
    fields = {name: (field.annotation, field) for name, field in schemas.ChatCompletion.model_fields.items() if name != "created"}
    assert missing(create_model("Dropped", **fields), ChatCompletion) == ["created"]


def events(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON objects of a stream of server-sent events, up to ``[DONE]``."""
    data = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(item) for item in data[:-1]]


def completion_chunk(chunk: dict[str, Any]) -> None:
    """A streamed text completion's chunk is a Completion, but for ``finish_reason``: null until the last chunk.

    OpenAI's stream does the same; the SDK's type has no null there (it builds streamed chunks unvalidated).
    """
    try:
        Completion.model_validate(chunk)
    except ValidationError as exc:
        assert [error["loc"] for error in exc.errors()] == [("choices", 0, "finish_reason")], exc
        assert chunk["choices"][0]["finish_reason"] is None


def test_openai_answers_validate_as_the_sdk_types(scripted_server: tuple[str, Bot, Any]) -> None:
    url = scripted_server[0] + "/v1"
    listed = httpx.get(f"{url}/models").json()
    ids = [Model.model_validate(m).id for m in listed["data"]]
    assert listed["object"] == "list" and ids[0] == "chatbot"
    Model.model_validate(httpx.get(f"{url}/models/mood").json())

    ask = {"model": "chatbot", "user": "schemas", "messages": [{"role": "user", "content": "Can I bring my Trek in on Friday?"}]}
    chat = httpx.post(f"{url}/chat/completions", json=ask).json()
    assert ChatCompletion.model_validate(chat).model_extra["chatbot"]["skill"] == "booking"
    with pytest.raises(ValidationError):  # the SDK's types do fail on a missing field
        ChatCompletion.model_validate({key: value for key, value in chat.items() if key != "created"})
    chunks = [ChatCompletionChunk.model_validate(c) for c in events(httpx.post(f"{url}/chat/completions", json=ask | {
        "stream": True, "stream_options": {"include_usage": True}}))]
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].usage is not None and chunks[-2].model_extra["chatbot"]

    prompt = "The staff were great!\n\n###\n\n"
    done = Completion.model_validate(httpx.post(f"{url}/completions", json={"model": "mood", "prompt": prompt, "n": 2, "echo": True}).json())
    assert len(done.choices) == 2 and done.usage is not None
    streamed = events(httpx.post(f"{url}/completions", json={"model": "mood", "prompt": prompt, "stream": True}))
    for chunk in streamed[:-1]:
        completion_chunk(chunk)
    assert Completion.model_validate(streamed[-1]).choices[0].finish_reason == "stop"


def test_file_and_fine_tuning_answers_validate_as_the_sdk_types(tuning_server: tuple[openai.OpenAI, Bot, str]) -> None:
    client, _, base = tuning_server
    url = str(client.base_url).rstrip("/")
    upload = httpx.post(f"{url}/files", files={"file": ("mood.jsonl", jsonl(ROWS))}, data={"purpose": "fine-tune"}).json()
    file_id = FileObject.model_validate(upload).id
    listed = httpx.get(f"{url}/files").json()
    assert listed["object"] == "list" and file_id in [FileObject.model_validate(f).id for f in listed["data"]]

    created = httpx.post(f"{url}/fine_tuning/jobs", json={"model": base, "training_file": file_id, "metadata": {"kind": "classify"},
                                                          "hyperparameters": {"n_epochs": 1, "batch_size": 2}}).json()
    job_id = FineTuningJob.model_validate(created).id
    assert wait_for(client, job_id).status == "succeeded"
    job = FineTuningJob.model_validate(httpx.get(f"{url}/fine_tuning/jobs/{job_id}").json())
    assert job.fine_tuned_model and job.hyperparameters.n_epochs == 1
    assert job_id in [FineTuningJob.model_validate(j).id for j in httpx.get(f"{url}/fine_tuning/jobs").json()["data"]]
    logged = httpx.get(f"{url}/fine_tuning/jobs/{job_id}/events").json()["data"]
    assert {FineTuningJobEvent.model_validate(e).type for e in logged} == {"message", "metrics"}
    points = httpx.get(f"{url}/fine_tuning/jobs/{job_id}/checkpoints").json()["data"]
    assert [FineTuningJobCheckpoint.model_validate(p).fine_tuned_model_checkpoint for p in points] == [job.fine_tuned_model]

    endless = httpx.post(f"{url}/fine_tuning/jobs", json={"model": base, "training_file": file_id,
                                                          "hyperparameters": {"n_epochs": 50, "batch_size": 1}}).json()
    assert FineTuningJob.model_validate(httpx.post(f"{url}/fine_tuning/jobs/{endless['id']}/cancel").json()).status == "cancelled"
    wait_for(client, endless["id"])

    scored = httpx.post(f"{url}/completions", json={"model": "mood", "prompt": ROWS[0]["prompt"], "max_tokens": 3, "logprobs": 2}).json()
    assert Completion.model_validate(scored).choices[0].logprobs.top_logprobs
    assert FileDeleted.model_validate(httpx.delete(f"{url}/files/{file_id}").json()).deleted
