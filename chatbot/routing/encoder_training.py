"""Fine-tuning the sentence encoder on the routing examples (used for large example sets).

The encoder and a prototype per skill are trained together with the head's loss (cross-entropy
over ``scale * cos(embedding, prototype)``), AdamW with warm-up and linear decay, word embeddings
frozen (same accuracy, faster on a CPU). The result is a model folder like the original, plus the
prototypes and a ``chatbot_encoder_id`` file so its embeddings get their own cache keys.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from chatbot.routing.encoder import Encoder, ProgressCallback, embed
from chatbot.routing.head import SCALE, centroids


def finetune(encoder: Encoder, texts: list[str], labels: np.ndarray, n_classes: int, target: Path, encoder_id: str, *,
             init: np.ndarray | None = None, epochs: int = 2, lr: float = 5e-5, batch_size: int = 32, scale: float = SCALE,
             seed: int = 0, on_progress: ProgressCallback | None = None) -> None:
    """Write a fine-tuned copy of *encoder* to folder *target* (``prototypes.npy`` inside)."""
    import torch
    from transformers import AutoModel

    torch.manual_seed(seed)
    model = AutoModel.from_pretrained(encoder.source)
    tokenizer = encoder.tokenizer
    model.get_input_embeddings().weight.requires_grad_(False)
    if init is None:
        init = centroids(encoder.encode(texts), labels, n_classes)
    prototypes = torch.nn.Parameter(torch.from_numpy(init.copy()))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    opt = torch.optim.AdamW([{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr},
                             {"params": [prototypes], "lr": lr * 50}], weight_decay=0.01)
    per_epoch = (len(texts) + batch_size - 1) // batch_size
    total = max(1, epochs * per_epoch)
    warmup = max(1, int(0.06 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total - s) / total))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    started, step = time.monotonic(), 0
    for _ in range(epochs):
        order = torch.randperm(len(texts), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            z = embed(model, tokenizer, [texts[i] for i in batch], encoder.max_length, "mean")
            logits = scale * z @ torch.nn.functional.normalize(prototypes, dim=-1).T
            loss = torch.nn.functional.cross_entropy(logits, y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if on_progress:
                on_progress("fine-tuning the encoder", step, total)
    model.eval()
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    pooling = Path(encoder.source) / "1_Pooling"
    if pooling.is_dir():
        shutil.copytree(pooling, target / "1_Pooling")
    np.save(target / "prototypes.npy", torch.nn.functional.normalize(prototypes.detach(), dim=-1).numpy().astype(np.float32))
    (target / "chatbot_encoder_id").write_text(encoder_id + "\n", encoding="utf-8")
    (target / "chatbot_finetune.json").write_text(json.dumps({
        "base": encoder.id, "examples": len(texts), "classes": n_classes, "epochs": epochs, "lr": lr,
        "batch_size": batch_size, "scale": scale, "seed": seed, "seconds": round(time.monotonic() - started, 1),
    }, indent=2), encoding="utf-8")
