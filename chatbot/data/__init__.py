"""Fine-tuning data: read any table or JSON format, check it, fix it, build prompts, split it."""

from chatbot.data.check import Finding, Report, check_examples, check_file
from chatbot.data.fix import FixResult, fix_file
from chatbot.data.io import DataFile, DataFormatError, Example, Record, load_examples, read_file, read_records, write_jsonl
from chatbot.data.split import split_examples, split_file
from chatbot.data.template import render_table

__all__ = [
    "DataFile",
    "DataFormatError",
    "Example",
    "Finding",
    "FixResult",
    "Record",
    "Report",
    "check_examples",
    "check_file",
    "fix_file",
    "load_examples",
    "read_file",
    "read_records",
    "render_table",
    "split_examples",
    "split_file",
    "write_jsonl",
]
