"""chatbot: assistants made of several fine-tuned completion models."""

__version__ = "0.1.0"
