import pytest

from chatbot.skills.metrics import classify_metrics, extract_metrics, generate_metrics, qa_metrics

STOP = [" END"]


def test_extract_micro_f1_over_type_value_pairs():
    refs = [" skills:['python', 'sql']\nexperience:['5 years']\n END", " no entity\n , END"]
    preds = [" skills:['Python', 'java']\n END", " no entity END"]
    m = extract_metrics(preds, refs, STOP)
    # one true positive (skills, python), one false positive (java), two misses (sql, 5 years)
    assert m["micro_precision"] == pytest.approx(0.5)
    assert m["micro_recall"] == pytest.approx(1 / 3)
    assert m["micro_f1"] == pytest.approx(0.4)
    assert m["per_type"]["experience"]["recall"] == 0.0


def test_extract_perfect_and_empty():
    ref = " diploma:['phd']\n END"
    assert extract_metrics([ref], [ref], STOP)["micro_f1"] == 1.0
    assert extract_metrics([" garbage"], [ref], STOP)["micro_f1"] == 0.0


def test_classify_metrics():
    m = classify_metrics([" a END", " b END", " a END", " c END"], [" a END", " b END", " b END", " b END"], STOP)
    assert m["accuracy"] == 0.5
    assert m["per_class"]["b"]["recall"] == pytest.approx(1 / 3)
    assert m["confusion_matrix"]["labels"] == ["a", "b", "c"]
    assert m["confusion_matrix"]["matrix"][1] == [1, 1, 1]
    # over the reference labels: a has P 1/2, R 1 (F1 2/3); b has P 1, R 1/3 (F1 1/2)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_qa_metrics():
    m = qa_metrics([" The shop opens at 9am END", " no idea END"], [" shop opens at 9am END", " at noon END"], STOP)
    assert m["exact_match"] == 0.5
    assert m["token_f1"] == pytest.approx(0.5)


def test_generate_metrics():
    same = generate_metrics([" a red ceramic mug END"], [" a red ceramic mug END"], STOP)
    assert same["rougeL"] == pytest.approx(1.0) and same["bleu"] == pytest.approx(100.0)
    other = generate_metrics([" blue plate END"], [" a red ceramic mug END"], STOP)
    assert other["rougeL"] == 0.0
    part = generate_metrics([" a red mug END"], [" a red ceramic mug END"], STOP)
    assert part["rougeL"] == pytest.approx(2 * 1 * 0.75 / 1.75)  # longest common subsequence 3 words: P 3/3, R 3/4


def test_extract_with_sources_drops_hallucinated_values():
    refs = [" skills:['python']\n END"]
    preds = [" skills:['python', 'java']\n END"]
    assert extract_metrics(preds, refs, STOP)["micro_precision"] == 0.5
    assert extract_metrics(preds, refs, STOP, ["we use python"])["micro_precision"] == 1.0
