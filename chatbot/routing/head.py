"""The routing head: one learned prototype per skill, scored by cosine similarity.

A message's score for a skill is the cosine between its embedding and the skill's prototype, so
scores of different skills and of different fits are on one scale, and adding a skill is adding a
row. Prototypes start at the skill's mean embedding and are trained with a scaled-cosine softmax
(cross-entropy over ``scale * cos``), full batch, on embeddings that stay fixed.
"""

from __future__ import annotations

import numpy as np

SCALE = 20.0


def centroids(x: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Unit-length mean embedding of each class (classes numbered 0..n-1)."""
    out = np.zeros((n_classes, x.shape[1]), dtype=np.float32)
    np.add.at(out, y, x)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def fit_prototypes(x: np.ndarray, y: np.ndarray, n_classes: int, *, init: np.ndarray | None = None, steps: int = 150,
                   lr: float = 0.05, scale: float = SCALE, seed: int = 0) -> np.ndarray:
    """Prototypes (``n_classes x dim``, unit rows) trained on unit embeddings *x* with labels *y*."""
    import torch

    init = centroids(x, y, n_classes) if init is None else init
    if n_classes < 2:
        return init
    torch.manual_seed(seed)
    xs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    ys = torch.from_numpy(np.asarray(y, dtype=np.int64))
    weights = torch.nn.Parameter(torch.from_numpy(init.copy()))
    counts = torch.bincount(ys, minlength=n_classes).float()
    class_weight = (counts.sum() / (n_classes * counts.clamp(min=1))).clamp(max=10.0)  # balanced across skills
    opt = torch.optim.Adam([weights], lr=lr)
    for _ in range(steps):
        logits = scale * xs @ torch.nn.functional.normalize(weights, dim=-1).T
        loss = torch.nn.functional.cross_entropy(logits, ys, weight=class_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.nn.functional.normalize(weights.detach(), dim=-1).numpy().astype(np.float32)


def scores(x: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Cosine of each (unit) embedding with each prototype: ``n x n_classes``."""
    return x @ prototypes.T
