"""chatbot: assistants made of several fine-tuned completion models."""

__version__ = "0.1.0"  # the one place the version is written: pyproject.toml reads it (dynamic = ["version"])
