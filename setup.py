"""One build hook; everything else about the package is in pyproject.toml.

The repository keeps ``data/`` (vocabularies, seeds) and ``schemas/`` (the shard contract) at its
top level, outside any Python package. A wheel can only carry files inside its packages, so
``build_py`` copies the two folders into the ``pipeline`` package as ``pipeline/_shipped/data`` and
``pipeline/_shipped/schemas``; ``pipeline/paths.py`` reads them there when installed, and from the
top-level folders in an editable install (which runs no copy: ``editable_mode``). The same file list
goes into the sdist (``get_source_files``), so a wheel built from the sdist carries them too.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("data", "schemas")
INTO = Path("pipeline", "_shipped")


class build_py_with_shipped_files(build_py):
    def _shipped(self) -> dict[str, str]:
        """{destination under build_lib: source} for every file of the shipped folders."""
        return {str(Path(self.build_lib, INTO, f)): f.as_posix()
                for top in SHIPPED for f in sorted(Path(top).rglob("*"))
                if f.is_file() and "__pycache__" not in f.parts}

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for dest, src in self._shipped().items():
            self.mkpath(str(Path(dest).parent))
            self.copy_file(src, dest, preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        return outputs if self.editable_mode else outputs + list(self._shipped())

    def get_source_files(self) -> list[str]:
        return super().get_source_files() + list(self._shipped().values())


setup(cmdclass={"build_py": build_py_with_shipped_files})
