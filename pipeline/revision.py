"""Which code made a build: the package version and, in a git checkout, the commit.

An installed wheel has no checkout (``REPO_ROOT`` is None): git is not asked, so a venv that happens
to sit inside some other repository does not report that repository's commit.
"""

from __future__ import annotations

import subprocess
from functools import cache

from pipeline import __version__
from pipeline.paths import REPO_ROOT


@cache
def code_revision() -> dict[str, str | bool | None]:
    if REPO_ROOT is None:
        return {"version": __version__, "git_commit": None, "git_dirty": None}
    commit, dirty = None, None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip() or None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=5, check=True).stdout
        dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return {"version": __version__, "git_commit": commit, "git_dirty": dirty}
