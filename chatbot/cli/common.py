"""What every command shares: the consoles, error handling, quiet logs, escape decoding."""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from chatbot.errors import ChatbotError

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

REGISTRY_HELP = "models.yaml to use (default: $CHATBOT_REGISTRY, else ./models.yaml)"


def quiet_libraries() -> None:
    """Logs are structured and quiet by default; CHATBOT_LOG=INFO (or DEBUG) shows ours."""
    level = os.environ.get("CHATBOT_LOG", "WARNING").upper()
    logging.basicConfig(level=level, format='{"level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}')
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def handle_errors(func: F) -> F:
    """Turn a ChatbotError into one red line on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ChatbotError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def decode_escapes(text: str, option: str) -> str:
    r"""*text* with ``\n``, ``\t`` and the like decoded (non-ASCII characters kept as they are)."""
    try:
        decoded = text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError as exc:
        raise ChatbotError(f"{option} {text!r}: bad escape sequence ({exc.reason})") from None
    if not decoded:
        raise ChatbotError(f"{option} cannot be empty")
    return decoded
