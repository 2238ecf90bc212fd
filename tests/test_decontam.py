from __future__ import annotations

import json
from pathlib import Path

import pytest

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


# Eval sets as Parquet (any text column) and as .txt (one text a line), as docs/dedup.md and docs/tinygsm.md
# document them next to JSONL.
PARQUET_TEXT = ("A library has 120 books on each shelf and 8 shelves in the reading room. "
                "How many books are in the reading room altogether?")
TXT_TEXT = ("Jun plants 6 rows of tulips with 15 tulips in each row in the school garden. "
            "How many tulips does Jun plant in the school garden?")


def eval_files(tmp_path: Path) -> tuple[Path, Path]:
    import polars as pl

    parquet = tmp_path / "evals.parquet"
    pl.DataFrame({"id": [1, 2, 3], "problem": ["What is 2 plus 2?", None, PARQUET_TEXT]}).write_parquet(parquet)
    txt = tmp_path / "evals.txt"
    txt.write_text(f"How many legs do 3 spiders have?\n\n   \n{TXT_TEXT}\n")
    return parquet, txt


def test_parquet_and_txt_eval_sets_are_read_and_a_shared_13_gram_is_dropped(tmp_path: Path) -> None:
    from pipeline.decontam import load_eval_sets

    parquet, txt = eval_files(tmp_path)
    evals = load_eval_sets([(parquet, "problem"), (txt, "question")], n=13)  # .txt: the field does not apply
    assert evals.texts == ["What is 2 plus 2?", PARQUET_TEXT, "How many legs do 3 spiders have?", TXT_TEXT]
    assert evals.sources == ["evals.parquet#0", "evals.parquet#1", "evals.txt#0", "evals.txt#1"]
    records = [
        {"id": "p", "question": PARQUET_TEXT.replace("120", "75").replace("8 shelves", "3 shelves")},
        {"id": "t", "question": "Here is one: " + TXT_TEXT.replace("6 rows", "9 rows")},
        {"id": "fresh", "question": "Liam buys 5 apples for $2 each and 3 pears for $1.50 each. How much in all?"},
    ]
    kept, rejected = decontaminate(records, evals, "question")
    assert [r["id"] for r in kept] == ["fresh"]
    assert [(json.loads(r["record_json"])["id"], r["reason"]) for r in rejected] == [
        ("p", "contaminated"), ("t", "contaminated")]
    assert rejected[0]["detail"].endswith("in evals.parquet#1") and rejected[1]["detail"].endswith("in evals.txt#1")
    assert rejected[0]["detail"].startswith("13-gram 'a library has books on each shelf and shelves in the")


def test_an_eval_parquet_without_the_field_is_a_clear_error(tmp_path: Path) -> None:
    from pipeline.decontam import load_eval_sets
    from pipeline.errors import UserError

    parquet, _ = eval_files(tmp_path)
    with pytest.raises(UserError, match=r"evals.parquet: no column 'question'"):
        load_eval_sets([(parquet, "question")], n=13)


def test_a_recipe_names_parquet_and_txt_eval_sets(tmp_path: Path) -> None:
    from pipeline.recipe import load_recipe
    from tests.conftest import write_recipe

    eval_files(tmp_path)
    recipe = load_recipe(write_recipe(tmp_path / "gsm.toml", """
        name = "g"
        kind = "tinygsm"
        [generate]
        count = 2
        [decontaminate]
        eval_sets = [{path = "evals.parquet", field = "problem"}, {path = "evals.txt"}]
    """))
    assert [(e.path, e.field) for e in recipe.decontaminate.eval_sets] == [
        (tmp_path / "evals.parquet", "problem"), (tmp_path / "evals.txt", "question")]


def test_every_kind_decontaminates_its_own_text_field() -> None:
    from pipeline.kinds import get_kind

    for name, field in (("tinystories", "story"), ("tinygsm", "question"), ("evol_instruct", "instruction")):
        kind = get_kind(name)
        assert "decontaminate" in [s.name for s in kind.stages] and kind.text_field == field


@pytest.mark.slow
def test_a_story_build_drops_a_story_found_in_an_eval_set_and_the_card_says_what_was_checked(tmp_path: Path) -> None:
    from pipeline.kinds import InProcess, run_build
    from pipeline.recipe import load_recipe
    from pipeline.shards import read_split, verify_dataset
    from tests.conftest import part_recipe, recipe_seed
    from tests.replay import preload_stories

    import polars as pl

    plain = part_recipe(tmp_path / "plain.toml", "clean", recipe_seed(2), 3)
    texts = preload_stories(plain, range(3))  # every story from the cache: the model writes nothing
    # an evaluation set (TinyStories' own validation file has a "text" field) holding story 1, reworded at its
    # end: a shared 13-gram is enough
    evals = tmp_path / "valid.jsonl"
    evals.write_text(json.dumps({"text": texts[1].rsplit(".", 2)[0] + ". And then they all went to bed."}) + "\n"
                     + json.dumps({"text": "Once there was a frog who could not jump at all."}) + "\n")
    ds = verify_dataset(run_build(load_recipe(plain), InProcess(echo=lambda _: None)).published.path)
    assert "Not decontaminated: the recipe names no evaluation set" in (ds.path / "README.md").read_text()

    checked = part_recipe(tmp_path / "checked.toml", "clean", recipe_seed(2), 3,
                          extra=f'[decontaminate]\neval_sets = [{{path = "{evals}", field = "text"}}]\n')
    ds = verify_dataset(run_build(load_recipe(checked), InProcess(echo=lambda _: None)).published.path)
    rows = read_split(ds.path, "train")
    assert rows.height == 2 and texts[1] not in rows["story"].to_list()
    rejected = pl.read_parquet(ds.path / "rejected.parquet")
    assert rejected.select("stage", "reason").rows() == [("decontaminate", "contaminated")]
    assert rejected["detail"][0].startswith("13-gram ") and rejected["detail"][0].endswith("in valid.jsonl#0")
    card = (ds.path / "README.md").read_text()
    assert ("Decontaminated against valid.jsonl (text): 2 texts, checked for shared 13-grams (punctuation and "
            "numbers removed) and MinHash near-duplicates (Jaccard >= 0.8); 1 record removed.") in card
