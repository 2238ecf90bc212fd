from __future__ import annotations

from pathlib import Path

from pipeline.decontam import build_index, decontaminate, ngram_words

FIXTURE = Path(__file__).parent / "fixtures" / "eval_sample.jsonl"


def test_ngrams_ignore_numbers_and_punctuation() -> None:
    assert ngram_words("Tom has 3 apples, and 4.5 pears!") == ["tom", "has", "apples", "and", "pears"]


def test_copied_eval_problem_with_new_numbers_is_caught() -> None:
    index = build_index([(FIXTURE, "question")], n=13)
    assert len(index) > 0
    copied = ("A bakery sells 48 muffins in the morning and half as many in the afternoon. "
              "Each muffin costs $3. How much money does the bakery make in a day?")
    original_numbers = copied.replace("48", "40").replace("$3", "$2")
    fresh = "Liam buys 5 apples for $2 each and 3 pears for $1.50 each. How much does he pay in all?"
    records = [{"id": "a", "question": original_numbers}, {"id": "b", "question": fresh}]
    kept, rejected = decontaminate(records, index, "question")
    assert [r["id"] for r in kept] == ["b"]
    assert rejected[0]["reason"] == "contaminated" and "eval_sample.jsonl#0" in rejected[0]["detail"]


def test_short_overlap_is_not_contamination() -> None:
    index = build_index([(FIXTURE, "question")], n=13)
    assert index.match("A bakery sells muffins in the morning.") is None


def test_near_duplicates_of_eval_texts_are_caught_without_a_shared_13_gram() -> None:
    from pipeline.decontam import load_eval_sets

    evals = load_eval_sets([(FIXTURE, "question")], n=13)
    original = ("Nina reads 15 pages every day. Her book has 240 pages and she has already read 60 pages. "
                "How many more days does she need to finish the book?")
    # every 12th word replaced: no 13-gram is left in common, but most of the text still is
    edited = " ".join(w if (k + 1) % 12 else "zzz" for k, w in enumerate(original.split()))
    assert evals.ngrams.match(edited) is None
    kept, rejected = decontaminate([{"id": "b", "question": edited}], evals, "question", near_threshold=0.3,
                                   ngram=3)
    assert kept == [] and "near-duplicate of eval_sample.jsonl#2" in rejected[0]["detail"]
    kept, _ = decontaminate([{"id": "b", "question": edited}], evals, "question", near_threshold=None)
    assert len(kept) == 1  # n-grams alone miss it
