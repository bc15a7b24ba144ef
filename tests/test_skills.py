from chatbot.skills import KINDS, build_prompt, format_completion, format_entities, get_kind, parse_entities, parse_label, parse_text

import pytest

from chatbot.errors import ChatbotError


def test_prompt_ends_with_separator_and_completion_format():
    assert build_prompt("  Hello there ") == "Hello there\n\n###\n\n"
    assert build_prompt("hi", "\n->") == "hi\n->"
    assert format_completion("positive") == " positive END"


def test_history_is_part_of_the_prompt():
    prompt = build_prompt("and on sunday?", history=[("when do you open?", "at 9am")])
    assert prompt == "User: when do you open?\nAssistant: at 9am\nUser: and on sunday?\n\n###\n\n"


def test_parse_entities_tutorial_format():
    parsed = parse_entities(" experience:['3 - 5 years']\nskills:['python', 'c++']\n END")
    assert parsed.entities == {"experience": ["3 - 5 years"], "skills": ["python", "c++"]}
    assert parse_entities(" no entity\n , END").entities == {}
    # a list cut short by max_tokens still yields its complete values
    assert parse_entities(" skills:['python', 'java', 'go").entities == {"skills": ["python", "java"]}


def test_format_entities_round_trips():
    entities = {"skills": ["python", "it's"], "diploma": ["phd"]}
    assert parse_entities(format_completion(format_entities(entities))).entities == entities
    assert format_entities({}) == "no entity"


def test_parse_label_and_text_cut_at_stop():
    assert parse_label(" positive END junk").label == "positive"
    assert parse_text(" We open at 9am. END and more", [" END"]).text == "We open at 9am."


def test_unknown_kind_names_the_choices():
    with pytest.raises(ChatbotError, match="qa, classify, generate, extract"):
        get_kind("summarize")
    assert set(KINDS) == {"qa", "classify", "generate", "extract"}


def test_entities_not_in_the_source_are_dropped():
    completion = " experience:['3 - 5 years', '10 years']\nskills:['python', 'python', 'c#']\n END"
    source = "3-5 years of Python and C# wanted.\n\n###\n\n"
    assert parse_entities(completion, source=source).entities == {"experience": ["3 - 5 years"], "skills": ["python", "c#"]}
    assert parse_entities(completion).entities["experience"] == ["3 - 5 years", "10 years"]  # no source: kept


def test_reply_templates_fill_slots_and_name_what_is_missing() -> None:
    from chatbot.skills.replies import missing, render

    slots = {"bike": ["Trek"], "service": ["brakes", "gears", "chain"]}
    assert render("Your {bike}: {service} on {day}.", slots) == "Your Trek: brakes, gears and chain on ."
    assert render("It reads {label}.", {}, label="positive") == "It reads positive."
    assert missing({"bike": "Which bike?", "day": "Which day?"}, slots) == "day"
    assert missing({"bike": "Which bike?"}, slots) is None
