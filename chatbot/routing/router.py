"""The router: which skill takes a message, or none (out of scope).

A message is embedded (``encoder.py``) and compared with each skill's examples or prototype
(``head.py``); the best score, and below the calibrated threshold (``calibration.py``) the message
is out of scope. How the router is fitted depends on the amount of data:

* up to ``finetune_min_examples`` in-scope examples (a bot's few hundred): the encoder stays as
  shipped, a message scores the mean cosine of its nearest examples of each skill, and the threshold is calibrated on k-fold
  cross-validated scores of the examples (plus the out-of-scope examples, never trained on);
* from that many on (CLINC150's 15,000), the encoder is fine-tuned together with the prototypes on
  a stratified ``1 - held_out`` share of the examples (three epochs), and the threshold is
  calibrated on the held-out share plus the out-of-scope examples.

The fitted state (prototypes, threshold, the fine-tuned encoder) is cached on disk under a hash of
(encoder, examples, out-of-scope examples, settings), and so are the embeddings, under a hash of
(encoder, text): fitting again over the same data takes about as long as loading the encoder.
:meth:`Router.update` changes the skills without fine-tuning again: only new texts are embedded,
the threshold is recalibrated (seconds) when the encoder is the shipped one; with a fine-tuned
encoder the new skill gets the mean of its embeddings as prototype and the threshold is kept.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from chatbot.routing.cache import EmbeddingCache, build_folder, default_cache_dir, digest, load_arrays, save_arrays
from chatbot.routing.calibration import Calibration, calibrate, calibrate_margin, doubt
from chatbot.defaults import DEFAULT_ENCODER
from chatbot.routing.encoder import Encoder, ProgressCallback
from chatbot.routing.head import centroids, nearest_scores, scores
from chatbot.runtime import torch_thread

log = logging.getLogger(__name__)
STATE_VERSION = 8  # 8: the margin for asking saves the most turns
RUNNERS_UP = 3


class Candidate(BaseModel):
    """A skill and its score for a message."""

    skill: str
    score: float


class Route(BaseModel):
    """Where a message goes: ``skill`` None means out of scope (best score below the threshold)."""

    skill: str | None
    score: float = Field(description="cosine similarity of the message with the best skill's prototype")
    threshold: float
    in_scope: bool
    runners_up: list[Candidate] = Field(default_factory=list,
                                        description="the next best skills (the best ones when out of scope), at most 3")
    ask: list[str] = Field(default_factory=list, description="unsure: the two skills to let the user choose between (the best first)")


class RouterSettings(BaseModel):
    """Everything that changes a fitted router (part of its cache key)."""

    model_config = ConfigDict(extra="forbid")
    encoder: str = DEFAULT_ENCODER
    threshold: float | None = Field(default=None, description="fixed threshold; calibrated when None")
    finetune: Literal["auto", "always", "never"] = "auto"
    finetune_min_examples: int = Field(default=1000, ge=1, description="auto: fine-tune the encoder from this many in-scope examples")
    epochs: int = Field(default=3, ge=1)
    learning_rate: float = Field(default=5e-5, gt=0)
    folds: int = Field(default=5, ge=2, description="cross-validation folds for calibration (shipped encoder)")
    held_out: float = Field(default=0.2, gt=0, lt=1, description="share held out for calibration (fine-tuned encoder)")
    seed: int = 0
    ask: bool = Field(default=True, description="ask the user to choose between the two best skills when unsure (margin calibrated)")
    margin: float | None = Field(default=None, ge=0, description="fixed margin for asking; calibrated when None")


class Router:
    """Routes messages to skills; build it with :meth:`fit`."""

    def __init__(self, settings: RouterSettings | None = None, *, cache_dir: str | os.PathLike[str] | None = None,
                 on_progress: ProgressCallback | None = None) -> None:
        self.settings = settings or RouterSettings()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.on_progress = on_progress  # reports embedding and encoder fine-tuning as they go
        self.embeddings = EmbeddingCache(self.cache_dir / "embeddings")
        self.base_encoder = Encoder(self.settings.encoder, cache=self.embeddings)
        self.encoder = self.base_encoder
        self.finetuned: str | None = None
        self.examples: dict[str, list[str]] = {}
        self.out_of_scope: list[str] = []
        self.labels: list[str] = []
        self.prototypes = np.zeros((0, 384), dtype=np.float32)
        self.memory = np.zeros((0, 384), dtype=np.float32)  # the examples' embeddings, for the nearest-examples head
        self.memory_labels = np.zeros(0, dtype=np.int64)
        self.calibration = Calibration(method="percentile", threshold=0.0)
        self.key = ""
        self.from_cache = False

    # ------------------------------------------------------------ fitting

    @classmethod
    def fit(cls, examples: Mapping[str, Sequence[str]], out_of_scope: Sequence[str] = (), settings: RouterSettings | None = None,
            *, cache_dir: str | os.PathLike[str] | None = None, on_progress: ProgressCallback | None = None,
            previous: str | None = None) -> Router:
        """A router for *examples* (skill -> messages), from the cache when fitted before.

        *previous*: the key of an earlier router of the same bot; when only whole skills were added
        or removed since, it is updated (:meth:`update`) rather than fitted again.
        """
        router = cls(settings, cache_dir=cache_dir, on_progress=on_progress)
        router._set_data(examples, out_of_scope)
        if router._load(router.key):
            return router
        if previous and previous != router.key:
            earlier = cls.cached(previous, cache_dir=router.cache_dir, on_progress=on_progress)
            if earlier is not None and earlier._extends_to(router):
                return earlier.update(router.examples)
        if router._wants_finetune():
            router._fit_finetuned()
        else:
            router._fit_frozen()
        router._save()
        return router

    @classmethod
    def cached(cls, key: str, settings: RouterSettings | None = None, *, cache_dir: str | os.PathLike[str] | None = None,
               on_progress: ProgressCallback | None = None) -> Router | None:
        """The router saved under *key*, or None."""
        router = cls(settings, cache_dir=cache_dir, on_progress=on_progress)
        return router if router._load(key) else None

    def _extends_to(self, other: Router) -> bool:
        """Same settings and out-of-scope examples, and every skill in both has the same examples."""
        return (self.settings == other.settings and self.out_of_scope == other.out_of_scope
                and all(self.examples[name] == other.examples[name] for name in set(self.examples) & set(other.examples)))

    def update(self, examples: Mapping[str, Sequence[str]]) -> Router:
        """Change the skills (add, remove, replace) without fine-tuning the encoder again."""
        old_labels = [n for n in self.labels if n in examples and list(examples[n]) == self.examples[n]]
        old_prototypes = self.prototypes
        positions = [self.labels.index(n) for n in old_labels]
        self._set_data(examples, self.out_of_scope)
        if self._load(self.key):
            return self
        if self.finetuned is None:
            self._fit_frozen()  # only the new skill's texts are embedded: the others come from the cache
        else:  # kept skills keep their prototypes; a new one gets the mean of its embeddings
            rows = []
            for name in self.labels:
                if name in old_labels:
                    rows.append(old_prototypes[positions[old_labels.index(name)]])
                else:
                    rows.append(centroids(self.encoder.encode(self.examples[name]), np.zeros(len(self.examples[name]), np.int64), 1)[0])
            self.prototypes = np.stack(rows).astype(np.float32)
            note = "; skills changed since, threshold kept"
            if not self.calibration.held_out.endswith(note):
                self.calibration = self.calibration.model_copy(update={"held_out": self.calibration.held_out + note})
        self._save()
        return self

    def add_skill(self, name: str, texts: Sequence[str]) -> Router:
        """Add (or replace) one skill: only its texts are embedded, the other skills keep theirs."""
        return self.update({**self.examples, name: list(texts)})

    def remove_skill(self, name: str) -> Router:
        return self.update({k: v for k, v in self.examples.items() if k != name})

    def _set_data(self, examples: Mapping[str, Sequence[str]], out_of_scope: Sequence[str]) -> None:
        self.examples = {name: [t for t in texts if t.strip()] for name, texts in examples.items()}
        self.examples = {name: texts for name, texts in self.examples.items() if texts}
        self.out_of_scope = [t for t in out_of_scope if t.strip()]
        self.labels = sorted(self.examples)
        self.key = digest("router", STATE_VERSION, self.base_encoder.id, self.settings.model_dump(),
                          [(name, self.examples[name]) for name in self.labels], self.out_of_scope)

    def _flat(self) -> tuple[list[str], np.ndarray]:
        texts = [t for name in self.labels for t in self.examples[name]]
        y = np.array([i for i, name in enumerate(self.labels) for _ in self.examples[name]], dtype=np.int64)
        return texts, y

    def _wants_finetune(self) -> bool:
        mode = self.settings.finetune
        n = sum(len(v) for v in self.examples.values())
        return len(self.labels) >= 2 and (mode == "always" or (mode == "auto" and n >= self.settings.finetune_min_examples))

    def _fit_frozen(self) -> None:
        """Shipped encoder: the nearest-examples head, threshold from k-fold cross-validated scores."""
        from sklearn.model_selection import KFold, StratifiedKFold

        self.encoder, self.finetuned = self.base_encoder, None
        texts, y = self._flat()
        n_labels = len(self.labels)
        x = self.encoder.encode(texts + self.out_of_scope, on_progress=self.on_progress)
        x, oos = x[:len(texts)], x[len(texts):]
        self.memory, self.memory_labels = x.astype(np.float32), y
        self.prototypes = np.zeros((0, x.shape[1]), np.float32)
        held = np.zeros((len(y), n_labels), np.float32)  # each example's scores from a head that did not see it
        oos_held = np.zeros((len(oos), n_labels), np.float32)  # the out-of-scope examples' scores, averaged over the folds
        oos_score = np.zeros(len(oos), np.float32)  # and their best score, averaged over the folds (what the threshold is fitted on)
        counts = np.bincount(y, minlength=n_labels) if n_labels else np.zeros(0, int)
        folds = min(self.settings.folds, len(y))
        if n_labels >= 1 and folds >= 2:
            if counts.min() >= folds:
                splits = StratifiedKFold(folds, shuffle=True, random_state=self.settings.seed).split(x, y)
            else:
                splits = KFold(folds, shuffle=True, random_state=self.settings.seed).split(x)
            for train, test in splits:
                held[test] = nearest_scores(x[test], x[train], y[train], n_labels)
                if len(oos):
                    fold = nearest_scores(oos, x[train], y[train], n_labels)
                    oos_held += fold / folds
                    oos_score += fold.max(1) / folds
            held_out = f"{folds}-fold cross-validation"
        else:
            held_out = "none (too few examples)"
            held[np.arange(len(y)), y] = 1.0
        calibration = calibrate(y, held.argmax(1), held.max(1), oos_score, n_labels, fixed=self.settings.threshold, held_out=held_out)
        self.calibration = calibrate_margin(calibration, y, held, oos_held, ask=self.settings.ask and folds >= 2, fixed=self.settings.margin)

    def _fit_finetuned(self) -> None:
        """Fine-tune the encoder and prototypes on a stratified share; calibrate on the rest."""
        from sklearn.model_selection import train_test_split

        from chatbot.routing.encoder_training import finetune

        texts, y = self._flat()
        counts = np.bincount(y)
        idx = np.arange(len(y))
        can_stratify = counts.min() >= 2 and int(len(y) * self.settings.held_out) >= len(self.labels)
        train, test = train_test_split(idx, test_size=self.settings.held_out, random_state=self.settings.seed,
                                       stratify=y if can_stratify else None)
        train.sort()
        test.sort()
        s = self.settings
        ft_key = digest("finetune", 2, self.base_encoder.id, s.epochs, s.learning_rate, s.seed,
                        [(texts[i], self.labels[y[i]]) for i in train])
        target = self.cache_dir / "encoders" / ft_key[:32]
        base = self.base_encoder
        train_texts = [texts[i] for i in train]

        def build(tmp: Path) -> None:
            init = centroids(base.encode(train_texts, on_progress=self.on_progress), y[train], len(self.labels))
            torch_thread.run(lambda: finetune(base, train_texts, y[train], len(self.labels), tmp, f"finetuned:{ft_key}", epochs=s.epochs,
                                              lr=s.learning_rate, seed=s.seed, init=init, on_progress=self.on_progress))

        build_folder(target, build)
        self.finetuned = target.name
        self.encoder = Encoder(str(target), cache=self.embeddings)
        self.prototypes = np.load(target / "prototypes.npy")
        x = self.encoder.encode([texts[i] for i in test] + self.out_of_scope, on_progress=self.on_progress)
        s_test, s_oos = scores(x[:len(test)], self.prototypes), scores(x[len(test):], self.prototypes)
        calibration = calibrate(y[test], s_test.argmax(1), s_test.max(1), s_oos.max(1) if len(s_oos) else np.zeros(0),
                                len(self.labels), fixed=self.settings.threshold,
                                held_out=f"{len(test)} held-out examples ({self.settings.held_out:.0%}, encoder fine-tuned on the rest)")
        self.calibration = calibrate_margin(calibration, y[test], s_test, s_oos if len(s_oos) else np.zeros((0, len(self.labels))),
                                            ask=self.settings.ask, fixed=self.settings.margin)

    # ------------------------------------------------------------ state

    def _state_path(self, key: str) -> Path:
        return self.cache_dir / "routers" / f"{key[:32]}.npz"

    def _save(self) -> None:
        meta = {"version": STATE_VERSION, "key": self.key, "settings": self.settings.model_dump(), "labels": self.labels,
                "examples": self.examples, "out_of_scope": self.out_of_scope, "finetuned": self.finetuned,
                "calibration": self.calibration.model_dump()}
        save_arrays(self._state_path(self.key), {"prototypes": self.prototypes, "memory": self.memory,
                                                 "memory_labels": self.memory_labels}, meta)

    def _load(self, key: str) -> bool:
        loaded = load_arrays(self._state_path(key))
        if loaded is None:
            return False
        arrays, meta = loaded
        if meta.get("version") != STATE_VERSION or meta.get("key") != key:
            return False
        self.settings = RouterSettings.model_validate(meta["settings"])
        if self.base_encoder.name != self.settings.encoder:
            self.base_encoder = Encoder(self.settings.encoder, cache=self.embeddings)
        if meta["finetuned"]:
            folder = self.cache_dir / "encoders" / meta["finetuned"]
            if not (folder / "chatbot_encoder_id").exists():
                return False
            self.encoder = Encoder(str(folder), cache=self.embeddings)
        else:
            self.encoder = self.base_encoder
        self.examples, self.out_of_scope, self.labels = meta["examples"], meta["out_of_scope"], meta["labels"]
        self.finetuned, self.key = meta["finetuned"], key
        self.calibration = Calibration.model_validate(meta["calibration"])
        self.prototypes = arrays["prototypes"]
        self.memory, self.memory_labels = arrays["memory"], arrays["memory_labels"]
        self.from_cache = True
        return True

    # ------------------------------------------------------------ routing

    @property
    def threshold(self) -> float:
        return self.calibration.threshold

    @property
    def skills(self) -> list[str]:
        return list(self.labels)

    def _scores(self, q: np.ndarray) -> np.ndarray:
        if self.finetuned is None:
            return nearest_scores(q, self.memory, self.memory_labels, len(self.labels))
        return scores(q, self.prototypes)

    def route(self, text: str) -> Route:
        """The skill for one message."""
        return self.route_many([text])[0]

    def route_many(self, texts: Sequence[str]) -> list[Route]:
        """The skill for each message, embedded in batches (messages are never written to the cache)."""
        texts = list(texts)
        if not texts:
            return []
        if not self.labels:
            return [Route(skill=None, score=0.0, threshold=self.threshold, in_scope=False) for _ in texts]
        s = self._scores(self.encoder.encode(texts, cache=False))
        order = np.argsort(-s, axis=1, kind="stable")[:, :RUNNERS_UP + 1]  # a tie goes to the skill whose name sorts first
        routes = []
        unsure = doubt(s, self.threshold) < self.calibration.margin
        for row, top, ask in zip(s, order, unsure):
            best = float(row[top[0]])
            in_scope = best >= self.threshold
            others = top[1:] if in_scope else top[:RUNNERS_UP]
            routes.append(Route(skill=self.labels[top[0]] if in_scope else None, score=round(best, 6), threshold=self.threshold,
                                in_scope=in_scope, runners_up=[Candidate(skill=self.labels[i], score=round(float(row[i]), 6)) for i in others],
                                ask=[self.labels[i] for i in top[:2]] if in_scope and ask and len(top) >= 2 else []))
        return routes
