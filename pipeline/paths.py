"""Where the files shipped with tinyforge live.

The repository keeps ``data/`` and ``schemas/`` at its top level, next to the packages; that is
what an editable install (``pip install -e .``) reads. A wheel cannot carry folders outside its
packages, so its build (setup.py) copies them into this package as ``_shipped/data`` and
``_shipped/schemas``: a regular install reads those. The recipes are package data of ``flows``
in both layouts. These are plain paths (``Path(__file__)``, not ``importlib.resources``) because
callers pass them on as ``Path`` values (a recipe's ``vocab_dir``, fingerprints of the files), and
pip installs a wheel as plain files.
"""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_SHIPPED = _PACKAGE / "_shipped"
_INSTALLED = _SHIPPED.is_dir()

# The git checkout this code runs from, or None when it runs from an installed wheel.
REPO_ROOT: Path | None = None if _INSTALLED else _PACKAGE.parent
DATA_DIR = _SHIPPED / "data" if _INSTALLED else _PACKAGE.parent / "data"
SCHEMAS_DIR = _SHIPPED / "schemas" if _INSTALLED else _PACKAGE.parent / "schemas"
VOCAB_DIR = DATA_DIR / "vocab"
RECIPES_DIR = _PACKAGE.parent / "flows" / "recipes"
SEEDS_FILE = DATA_DIR / "seeds" / "gsm_seeds.jsonl"
INSTRUCTIONS_FILE = DATA_DIR / "seeds" / "instructions.jsonl"
EXEMPLARS_DIR = DATA_DIR / "exemplars"
STORY_EXEMPLARS_FILE = EXEMPLARS_DIR / "stories.jsonl"
STORY_SENTENCES_FILE = DATA_DIR / "stories" / "sentences.txt"  # TinyStories-Instruct's sentence constraint
EVOLUTION_EXEMPLARS_FILE = EXEMPLARS_DIR / "evolutions.jsonl"
REWRITE_EXEMPLARS_FILE = EXEMPLARS_DIR / "rewrites.jsonl"  # TinyGSM's problem rewrites
PROSPECT_TASKS_FILE = DATA_DIR / "prospecting" / "tasks.jsonl"  # one-shot prospecting's fixed task set (original)
