from pathlib import Path

import pytest

from chatbot.backends.base import GenerationRequest
from chatbot.backends.local import LocalBackend, StopMatcher
from conftest import ADAPTER_PROMPTS as PROMPTS


def test_stop_matcher_holds_back_partial_stop_and_cuts_at_stop():
    matcher = StopMatcher([" END"])
    assert matcher.feed("hello") == "hello"
    assert matcher.feed("hello E") == ""  # " E" may be the start of " END"
    assert matcher.feed("hello Ex") == " Ex"
    assert matcher.feed("hello Ex END more") == "" and matcher.stopped
    matcher = StopMatcher(["\n"])
    assert matcher.feed("a\nb") == "a" and matcher.stopped
    assert StopMatcher([]).feed("caf\ufffd") == "caf"  # an unfinished UTF-8 character waits


def test_sampling_keeps_the_likeliest_token_whatever_top_p():
    import torch

    from chatbot.backends.local import _sample

    logits = torch.tensor([0.5, 2.0, 1.0])
    for top_p in (5e-324, 1e-50, 0.01):  # below float32's smallest number, a top_p once kept no token: NaN, a 500
        assert _sample(logits, 2.0, top_p, torch.Generator().manual_seed(0)) == 1
    for temperature in (5e-324, 1e-45, 1e-40):  # so small that logits / temperature overflow float32: greedy, not NaN
        assert _sample(logits, temperature, 1.0, torch.Generator().manual_seed(0)) == 1


@pytest.fixture
def adapters(tiny_adapters: tuple[str, str, str]) -> tuple[str, str, str]:
    return tiny_adapters


def request(base: str, adapter: str | None, prompt: str = PROMPTS[0], **kw) -> GenerationRequest:
    settings = {"stop": [" END"], "max_tokens": 16} | kw
    return GenerationRequest(prompt=prompt, base_model=base, adapter=adapter, **settings)


def test_one_base_many_adapters_switched_per_request(adapters):
    base, a, b = adapters
    backend = LocalBackend()
    first = backend.complete(request(base, a))
    assert first.text == " We open at 9am" and first.finish_reason == "stop"
    assert backend.complete(request(base, b)).text == " positive"
    assert backend.complete(request(base, a, PROMPTS[1])).text == " negative"
    assert backend.complete(request(base, b, PROMPTS[1])).text == " a red mug"
    untuned = backend.complete(request(base, None))
    assert untuned.text != first.text
    assert backend.complete(request(base, a)).text == first.text  # switching back gives the same answer
    assert len(backend._models) == 1 and len(backend._adapters[base]) == 2


def test_stream_matches_complete_and_limits_apply(adapters):
    base, a, _ = adapters
    backend = LocalBackend()
    pieces = list(backend.stream(request(base, a)))
    assert len(pieces) > 1 and "".join(pieces) == backend.complete(request(base, a)).text
    short = backend.complete(request(base, a, max_tokens=2))
    assert short.finish_reason == "length" and short.completion_tokens == 2
    sampled = [backend.complete(request(base, None, temperature=1.5, top_p=0.9, seed=7)).text for _ in range(2)]
    assert sampled[0] == sampled[1]  # a seed makes sampling repeatable
    other = backend.complete(request(base, a, stop=[" at"]))
    assert other.text == " We open"


def test_missing_adapter_is_a_clear_error(adapters, tmp_path: Path):
    from chatbot.errors import ChatbotError

    base, _, _ = adapters
    with pytest.raises(ChatbotError, match="adapter_config.json missing"):
        LocalBackend().complete(request(base, str(tmp_path)))


def test_logprobs_cover_the_answer_and_rank_alternatives(tiny_base: str) -> None:
    from chatbot.backends.base import GenerationRequest
    from chatbot.backends.local import LocalBackend

    backend = LocalBackend("cpu")
    done = backend.complete(GenerationRequest(prompt="hello world", base_model=tiny_base, max_tokens=6, logprobs=3))
    lp = done.logprobs
    assert lp is not None and "".join(lp.tokens).startswith(done.text[: len("".join(lp.tokens))])
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) > 0
    assert all(p <= 0 for p in lp.token_logprobs) and all(len(top) <= 3 for top in lp.top_logprobs)
    assert lp.token_logprobs[0] == pytest.approx(max(lp.top_logprobs[0].values()))  # greedy: the best token was chosen
    assert backend.count_tokens(tiny_base, "hello world") >= 2
    assert backend.complete(GenerationRequest(prompt="hello", base_model=tiny_base, max_tokens=2)).logprobs is None


def test_every_end_id_of_the_generation_config_ends_a_reply(tiny_base: str, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chatbot.backends.base import GenerationRequest
    from chatbot.backends.local import LocalBackend

    prompt = GenerationRequest(prompt="What are your opening hours?", base_model=tiny_base, max_tokens=5, stop=[])
    first = LocalBackend().complete(prompt)
    assert first.finish_reason == "length" and first.completion_tokens == 5  # the tiny base rambles on
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    greedy = tokenizer(first.text, add_special_tokens=False)["input_ids"][0]
    two_ends = tmp_path / "two-ends"  # a base whose generation config lists two end-of-sequence ids, as many chat models do
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, greedy]
    model.save_pretrained(two_ends)
    tokenizer.save_pretrained(two_ends)
    ended = LocalBackend().complete(prompt.model_copy(update={"base_model": str(two_ends)}))
    assert (ended.text, ended.finish_reason, ended.completion_tokens) == ("", "stop", 0)

