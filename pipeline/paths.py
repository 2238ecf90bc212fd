"""Where the files shipped with tinyforge live.

tinyforge is installed editable (``pip install -e .``) from its repository, so
the shipped ``data/`` and ``schemas/`` folders sit next to the packages.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
SCHEMAS_DIR = REPO_ROOT / "schemas"
VOCAB_DIR = DATA_DIR / "vocab"
RECIPES_DIR = REPO_ROOT / "flows" / "recipes"
SEEDS_FILE = DATA_DIR / "seeds" / "gsm_seeds.jsonl"
INSTRUCTIONS_FILE = DATA_DIR / "seeds" / "instructions.jsonl"
