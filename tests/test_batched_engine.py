"""The batched engine against the reference path (LocalBackend: peft, one request at a time): the
same greedy tokens alone and in a batch of different adapters, one batch for requests that come
together, and an adapter cache that evicts and loads again correctly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import ADAPTER_ANSWERS, ADAPTER_PROMPTS

from chatbot.backends.base import GenerationRequest, drain
from chatbot.backends.batched import BatchedBackend, _relay
from chatbot.backends.local import LocalBackend

MORE_PROMPTS = ["Do you repair e-bikes?\n\n###\n\n", "Tell me about the shop", "x"]


@pytest.fixture(scope="module")
def reference() -> LocalBackend:
    return LocalBackend("cpu")


def _requests(base: str, adapters: list[str | None], **settings) -> list[GenerationRequest]:  # noqa: ANN003
    return [GenerationRequest(prompt=prompt, base_model=base, adapter=adapter, **({"max_tokens": 12, "stop": [" END"]} | settings))
            for adapter in adapters for prompt in ADAPTER_PROMPTS + MORE_PROMPTS]


def _shown(completion):  # noqa: ANN001, ANN202 - all but the time it waited; log-probabilities apart (see _close)
    found = completion.model_dump(exclude={"queued_ms"})
    if found["logprobs"]:
        found["logprobs"] = {key: value for key, value in found["logprobs"].items() if key in ("tokens", "text_offset")}
    return found


def _close(ours, reference) -> None:  # noqa: ANN001 - log-probabilities to 4 decimals
    if reference.logprobs:
        assert ours.logprobs.token_logprobs == pytest.approx(reference.logprobs.token_logprobs, abs=1e-4)
        for mine, theirs in zip(ours.logprobs.top_logprobs, reference.logprobs.top_logprobs):
            assert mine.keys() == theirs.keys() and list(mine.values()) == pytest.approx(list(theirs.values()), abs=1e-4)


NEAR_TIE = 0.02  # a gap in log-probability the rounding of adapters kept in bfloat16 can close


def _same_but_near_ties(engine: BatchedBackend, reference: LocalBackend, request: GenerationRequest) -> None:
    """The reference's greedy answer, or its tokens up to a step where its best two were within NEAR_TIE and *engine* took
    the second (a tiny random model has such ties; which ones depends on the versions of torch, transformers and peft)."""
    if _shown(engine.complete(request)) == _shown(reference.complete(request)):
        return
    scored = request.model_copy(update={"logprobs": 2})
    ours, theirs = engine.complete(scored).logprobs, reference.complete(scored).logprobs
    at = next((i for i, (mine, its) in enumerate(zip(ours.tokens, theirs.tokens)) if mine != its), None)
    assert at is not None, (request, ours.tokens, theirs.tokens)  # one ended sooner on the same tokens
    best, second = sorted(theirs.top_logprobs[at].items(), key=lambda item: -item[1])[:2]
    assert ours.tokens[at] == second[0] and best[1] - second[1] < NEAR_TIE, (request, at, theirs.top_logprobs[at])


def test_alone_each_request_gets_the_reference_tokens(tiny_adapters: tuple[str, str, str], reference: LocalBackend) -> None:
    base, a, b = tiny_adapters
    engine, exact = BatchedBackend("cpu"), BatchedBackend("cpu", adapter_dtype="float32")
    for request in _requests(base, [a, b, None]) + _requests(base, [a], logprobs=2, stop=[]):
        theirs = reference.complete(request)
        _same_but_near_ties(engine, reference, request)  # adapters kept in bfloat16 (the default)
        ours = exact.complete(request)  # kept in float32: the same tokens and numbers
        assert _shown(ours) == _shown(theirs), request
        _close(ours, theirs)
    assert engine.complete(GenerationRequest(prompt=ADAPTER_PROMPTS[0], base_model=base, adapter=a, stop=[" END"])).text == ADAPTER_ANSWERS["a"][0]


def test_requests_on_different_adapters_share_one_batch(tiny_adapters: tuple[str, str, str], reference: LocalBackend) -> None:
    base, a, b = tiny_adapters
    engine = BatchedBackend("cpu", max_batch=16)
    engine.preload(base)
    slots = engine._bases[base].slots
    where = [(layer.a.data_ptr(), layer.b.data_ptr()) for layer in slots.layers.values()]
    requests = _requests(base, [a, b, None])  # 15 requests: three adapters (or none), prompts of different lengths
    together = engine.complete_many(requests)
    assert slots.allocated == 3 and [(layer.a.data_ptr(), layer.b.data_ptr()) for layer in slots.layers.values()] == where  # never moved
    assert engine.joins == [len(requests)] and max(engine.steps) >= len(requests) - 2  # one batch (a row or two end at once)
    assert [c.text for c in together] == [reference.complete(r).text for r in requests]
    assert [c.completion_tokens for c in together] == [reference.complete(r).completion_tokens for r in requests]
    assert [c.finish_reason for c in together] == [reference.complete(r).finish_reason for r in requests]
    streamed = [list(engine.stream(r)) for r in requests[:2]]
    assert ["".join(pieces) for pieces in streamed] == [c.text for c in together[:2]]


def test_a_full_batch_waits_for_the_next(tiny_adapters: tuple[str, str, str]) -> None:
    base, a, b = tiny_adapters
    engine = BatchedBackend("cpu", max_batch=4)
    answers = engine.complete_many(_requests(base, [a, b]))
    assert max(engine.steps) == 4 and len(answers) == 10


def test_the_adapter_cache_evicts_the_least_recent_and_loads_it_again(tiny_adapters: tuple[str, str, str], tmp_path: Path,
                                                                       reference: LocalBackend) -> None:
    base, a, b = tiny_adapters
    engine = BatchedBackend("cpu", adapter_slots=1)
    ask = {name: GenerationRequest(prompt=ADAPTER_PROMPTS[0], base_model=base, adapter=path, max_tokens=8, stop=[" END"])
           for name, path in (("a", a), ("b", b))}
    for name in ("a", "b", "a"):
        assert engine.complete(ask[name]).text == ADAPTER_ANSWERS[name][0]
    slots = engine._bases[base].slots
    assert slots.loads == 3 and slots.resident() == [str(Path(a).resolve())]  # b went out when a came back
    before = len(engine.steps)
    both = engine.complete_many([ask["a"], ask["b"]])  # one slot, two adapters: never in one step
    assert [c.text for c in both] == [ADAPTER_ANSWERS["a"][0], ADAPTER_ANSWERS["b"][0]] and set(engine.steps[before:]) == {1}

    moved = tmp_path / "skill"  # a skill retrained under the same folder: the new weights answer
    shutil.copytree(a, moved)
    request = GenerationRequest(prompt=ADAPTER_PROMPTS[0], base_model=base, adapter=str(moved), max_tokens=8, stop=[" END"])
    assert engine.complete(request).text == ADAPTER_ANSWERS["a"][0]
    shutil.rmtree(moved)
    shutil.copytree(b, moved)
    assert engine.complete(request).text == ADAPTER_ANSWERS["b"][0] == reference.complete(request).text


def test_a_missing_adapter_is_an_error_for_its_request_only(tiny_adapters: tuple[str, str, str], tmp_path: Path) -> None:
    base, a, _ = tiny_adapters
    engine = BatchedBackend("cpu")
    missing = GenerationRequest(prompt="hi", base_model=base, adapter=str(tmp_path / "nothing"))
    with pytest.raises(Exception, match="no adapter there"):
        engine.complete(missing)
    good = GenerationRequest(prompt=ADAPTER_PROMPTS[0], base_model=base, adapter=a, stop=[" END"])
    [failed, answered] = engine._submit([missing, good])  # in one batch: the good one is answered
    with pytest.raises(Exception, match="no adapter there"):
        drain(_relay(failed))
    assert drain(_relay(answered)).text == ADAPTER_ANSWERS["a"][0]
    assert engine.complete(GenerationRequest(prompt=ADAPTER_PROMPTS[0], base_model=base, adapter=a, stop=[" END"])).text == ADAPTER_ANSWERS["a"][0]
    assert engine.count_tokens(base, "hello there") > 0


def test_int8_weights_still_give_each_adapter_its_answers(tiny_adapters: tuple[str, str, str]) -> None:
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

    base, a, b = tiny_adapters
    engine = BatchedBackend("cpu", quantize="int8")
    answers = engine.complete_many([GenerationRequest(prompt=prompt, base_model=base, adapter=adapter, max_tokens=8, stop=[" END"])
                                    for adapter in (a, b) for prompt in ADAPTER_PROMPTS])
    assert [c.text for c in answers] == ADAPTER_ANSWERS["a"] + ADAPTER_ANSWERS["b"]
    layers = engine._bases[base].slots.layers.values()
    assert layers and all(isinstance(layer.base, Int8Linear) for layer in layers)
    with pytest.raises(Exception, match="int8"):
        BatchedBackend("cpu", quantize="int4")


def test_bf16_weights_still_give_each_adapter_its_answers(tiny_adapters: tuple[str, str, str]) -> None:
    import torch

    base, a, b = tiny_adapters
    engine = BatchedBackend("cpu", quantize="bf16")
    answers = engine.complete_many([GenerationRequest(prompt=prompt, base_model=base, adapter=adapter, max_tokens=8, stop=[" END"], logprobs=1)
                                    for adapter in (a, b) for prompt in ADAPTER_PROMPTS])
    assert [c.text for c in answers] == ADAPTER_ANSWERS["a"] + ADAPTER_ANSWERS["b"]
    assert all(all(p <= 0 for p in c.logprobs.token_logprobs) for c in answers)
    layers = engine._bases[base].slots.layers.values()
    assert layers and all(layer.base.weight.dtype == torch.bfloat16 for layer in layers)
    assert all(layer.a.dtype == torch.bfloat16 for layer in layers)  # the adapters as kept (CHATBOT_ADAPTER_DTYPE)


def test_a_stream_left_early_stops_its_row(tiny_base: str) -> None:
    from chatbot.backends.base import Completion

    engine = BatchedBackend("cpu")
    request = GenerationRequest(prompt="x", base_model=tiny_base, max_tokens=500, stop=[])
    full = engine.complete(request)
    assert full.completion_tokens > 10  # read to the end, it runs a while
    [job] = engine._submit([request])
    stream = _relay(job)
    next(stream)
    stream.close()  # the client went away
    assert job.abandoned
    with engine._lock:  # the engine takes the next batch only when this is let go
        [left] = engine._submit([request])
        left.abandoned = True
    while not isinstance(item := left.out.get(timeout=60), Completion):
        pass
    assert item.completion_tokens == 0 and item.finish_reason == "stop"  # ended at its first step


def test_a_request_joins_a_batch_already_running(tiny_adapters: tuple[str, str, str], reference: LocalBackend) -> None:
    base, a, b = tiny_adapters
    engine = BatchedBackend("cpu")
    running = GenerationRequest(prompt="hello", base_model=base, max_tokens=300, stop=[])  # greedy, the base: never ends early
    [first] = engine._submit([running])
    stream = _relay(first)
    next(stream)  # it runs
    joining = [GenerationRequest(prompt=prompt, base_model=base, adapter=adapter, max_tokens=12, stop=[" END"])
               for adapter, prompt in ((b, ADAPTER_PROMPTS[0]), (None, "x"), (a, "Tell me a long story about the shop and its bikes, please"))]
    with engine._lock:  # between two steps of the running row
        later = engine._submit(joining)
    assert [drain(_relay(job)).text for job in later] == [reference.complete(r).text for r in joining]
    rest = drain(stream)
    assert rest.completion_tokens == 300 and _shown(rest) == _shown(reference.complete(running))  # the merge did not disturb it
    assert engine.joins == [1, 3] and max(engine.steps) >= 3  # they ran beside it (one may end at its first token), not after it


def test_local_skills_run_on_the_batched_engine_unless_the_reference_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    from chatbot.backends.llama_cpp_engine import LlamaCppBackend
    from chatbot.backends.pool import ENGINE_ENV, BackendPool
    from chatbot.registry import Skill

    skill = Skill(name="shop", kind="qa")
    assert isinstance(BackendPool().for_skill(skill), BatchedBackend)
    monkeypatch.setenv(ENGINE_ENV, "reference")
    assert isinstance(BackendPool().for_skill(skill), LocalBackend)
    monkeypatch.setenv(ENGINE_ENV, "llama-cpp")
    assert isinstance(BackendPool().for_skill(skill), LlamaCppBackend)  # llama-cpp-python is imported on the first request
    monkeypatch.setenv(ENGINE_ENV, "fast")
    with pytest.raises(Exception, match="use batched"):
        BackendPool().for_skill(skill)


def test_an_evaluation_sends_its_prompts_as_one_batch(tiny_adapters: tuple[str, str, str], reference: LocalBackend, tmp_path: Path) -> None:
    import json

    from bot_helpers import write_adapter_registry

    from chatbot.evaluation import evaluate_skill
    from chatbot.registry import load

    base, a, b = tiny_adapters
    registry = load(write_adapter_registry(tmp_path, base, a, b, max_tokens=8))
    data = tmp_path / "shop.jsonl"
    rows = [{"prompt": p, "completion": f"{x} END"} for p, x in zip(ADAPTER_PROMPTS, ADAPTER_ANSWERS["a"])] * 3
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    engine, seen = BatchedBackend("cpu"), []
    batched = evaluate_skill(registry, "shop", data, engine, on_example=lambda: seen.append(1))
    assert engine.joins == [len(rows)] and len(seen) == len(rows)  # all at once, progress for each
    one_by_one = evaluate_skill(registry, "shop", data, reference)
    assert batched["examples"] == one_by_one["examples"] and batched["token_f1"] == one_by_one["token_f1"] == 1.0


def test_the_batch_is_larger_on_a_gpu_and_set_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert BatchedBackend("cpu").max_batch == 8 and BatchedBackend("cuda").max_batch == 64  # nothing loads until a request
    monkeypatch.setenv("CHATBOT_MAX_BATCH", "3")
    assert BatchedBackend("cuda").max_batch == 3 and BatchedBackend("cpu", max_batch=5).max_batch == 5


@pytest.mark.parametrize("computes_bf16", [True, False])
def test_the_base_is_bf16_where_the_cpu_computes_it_and_float32_elsewhere(monkeypatch: pytest.MonkeyPatch, computes_bf16: bool) -> None:
    from chatbot.runtime import device

    monkeypatch.delenv("CHATBOT_ENGINE_QUANT", raising=False)
    monkeypatch.setattr(device, "cpu_computes_bf16", lambda: computes_bf16)
    assert BatchedBackend("cpu").quantize == ("bf16" if computes_bf16 else "float32")  # nothing loads until a request
    assert BatchedBackend("cuda").quantize == "bf16"
    monkeypatch.setenv("CHATBOT_ENGINE_QUANT", "float32")
    assert BatchedBackend("cpu").quantize == "float32" and BatchedBackend("cpu", quantize="int8").quantize == "int8"
    monkeypatch.setenv("CHATBOT_ENGINE_QUANT", "fp16")
    with pytest.raises(Exception, match="auto, float32, bf16, int8"):
        BatchedBackend("cpu")


def test_a_prompt_pass_scores_its_last_token_only(tiny_adapters: tuple[str, str, str], reference: LocalBackend) -> None:
    base, a, b = tiny_adapters
    engine = BatchedBackend("cpu", max_batch=16)
    engine.preload(base)
    scored: list[int] = []  # tokens per row the output layer scored, each pass
    engine._bases[base].model.get_output_embeddings().register_forward_hook(lambda _m, args, _o: scored.append(args[0].shape[1]))
    requests = _requests(base, [a, b])
    assert [c.text for c in engine.complete_many(requests)] == [reference.complete(r).text for r in requests]
    assert engine.joins == [len(requests)] and scored and set(scored) == {1}  # the prompts' pass too


def test_the_engines_pass_the_kv_cache_as_their_transformers_names_it(tiny_adapters: tuple[str, str, str], reference: LocalBackend,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    from transformers.utils import logging as transformers_logging

    base, a, _ = tiny_adapters
    request = GenerationRequest(prompt=ADAPTER_PROMPTS[0], base_model=base, adapter=a, stop=[" END"])
    transformers_logging.warning_once.cache_clear()  # what an earlier test logged is logged again
    with caplog.at_level("WARNING"):
        assert BatchedBackend("cpu").complete(request).text == reference.complete(request).text == ADAPTER_ANSWERS["a"][0]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("transformers")] == []  # nothing "deprecated"
