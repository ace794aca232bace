"""`distortions` and `metric` are plain libraries: neither imports the other, Django, or the platform.

Each library, with every one of its modules, is imported in a fresh interpreter whose import system
refuses the other library, Django and the platform's packages.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLATFORM_PACKAGES = sorted(p.name for p in (ROOT / "platform").iterdir() if (p / "__init__.py").is_file())

PROBE = """
import importlib, importlib.abc, pkgutil, sys

library, refused = sys.argv[1], set(sys.argv[2].split(","))

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in refused:
            raise ImportError(f"{library} imported {name}")
        return None

sys.meta_path.insert(0, Refuse())
package = importlib.import_module(library)
for module in pkgutil.walk_packages(package.__path__, library + "."):
    if not module.name.endswith("__main__"):
        importlib.import_module(module.name)
print("ok", len([m for m in sys.modules if m.split(".")[0] == library]))
"""


@pytest.mark.parametrize(("library", "other"), [("distortions", "metric"), ("metric", "distortions")])
def test_a_library_imports_neither_the_other_nor_django(library, other):
    refused = [other, "django", "rest_framework", "celery", *PLATFORM_PACKAGES]
    result = subprocess.run(
        [sys.executable, "-c", PROBE, library, ",".join(refused)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # the repository root only: platform/ is not importable
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ok")


def _imported_names(path: Path) -> set[str]:
    """Top-level package names imported anywhere in a module, function bodies included."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(("library", "other"), [("distortions", "metric"), ("metric", "distortions")])
def test_no_module_imports_the_other_library_even_lazily(library, other):
    refused = {other, "django", "rest_framework", "celery", *PLATFORM_PACKAGES}
    found = {
        str(path.relative_to(ROOT)): sorted(_imported_names(path) & refused)
        for path in sorted((ROOT / library).rglob("*.py"))
    }
    assert {path: names for path, names in found.items() if names} == {}
