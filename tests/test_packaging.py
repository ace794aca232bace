"""What `pip install .` ships, and how the platform starts without being installed (README, "Layout").

The wheel holds the two plain libraries, `distortions` and `metric`, with their package data; nothing
else lands in site-packages. The platform's packages (`config`, `core`, ...) are generic names that would
collide with other projects, so they are never installed: the platform runs from the repository (or the
Docker image) with platform/ on the path.

The wheel is built from a clean copy of the checkout (stale `build/` folders cannot leak into it) and
installed, non-editable and without the network, into a fresh virtualenv. That virtualenv sees the
dependencies through a `.pth` line naming this interpreter's site-packages: a plain path line, so the
`.pth` files in that folder (the developer's editable perceptlab finder among them) are not run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = {"distortions", "metric"}
PLATFORM_PACKAGES = (
    "config",
    "core",
    "accounts",
    "studies",
    "judgments",
    "exports",
    "training",
    "dashboard",
    "crowdsim",
    "devtools",
)
NOT_IN_A_CLEAN_CHECKOUT = (".git", "var", "build", "dist", "*.egg-info", "__pycache__", ".venv", "artifacts")

pytestmark = pytest.mark.slow
PIP = [sys.executable, "-m", "pip"]


def _run(argv: list[str], *, cwd: Path, env: dict | None = None, timeout: int = 300) -> str:
    """Run argv with only `env` (plus PATH and HOME) in its environment; fail with its output."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", str(cwd))}
    done = subprocess.run(
        argv, cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_IN_A_CLEAN_CHECKOUT))
    offline = ["-q", "--no-deps", "--no-build-isolation", "--no-index"]
    _run([*PIP, "wheel", *offline, "-w", str(work / "dist"), str(src)], cwd=work)
    (built,) = (work / "dist").glob("perceptlab-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel installed non-editable; the dependencies are borrowed."""
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], cwd=env_dir.parent)
    python = env_dir / "bin" / "python"
    # installed before the dependencies are borrowed, so pip sees no other perceptlab
    _run([*PIP, "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=env_dir)
    own = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=env_dir)
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(own.strip()) / "perceptlab-test-deps.pth").write_text("".join(f"{path}\n" for path in sorted(deps)))
    return python


def _readme_block(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    (block,) = [b for b in blocks if marker in b]
    return block


def test_the_wheel_installs_exactly_the_two_libraries(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (record,) = [n for n in names if n.endswith(".dist-info/RECORD")]
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        installed = {line.split(",")[0] for line in zf.read(record).decode().splitlines() if line}
        assert set(zf.read(top_level).decode().split()) == LIBRARIES
    tops = {
        path.split("/")[0] for path in installed if not path.split("/")[0].endswith((".dist-info", ".data"))
    }
    assert tops == LIBRARIES
    # every library file in the repository is shipped: modules and package data (the shipped LPIPS heads)
    in_repository = {
        path.relative_to(ROOT).as_posix()
        for lib in LIBRARIES
        for path in (ROOT / lib).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert in_repository <= installed, sorted(in_repository - installed)
    assert "metric/weights/v0.1/alex.pth" in installed


def test_the_installed_libraries_run_the_readme_examples_from_outside_the_repository(venv, tmp_path):
    setup = (
        "import numpy as np, torch\n"
        "patch = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)\n"
        "x0, x1 = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)\n"
    )
    engine = _readme_block("distortions.create")
    lpips = _readme_block("metric.LPIPS")
    assert 'backbone_weights="imagenet"' in lpips
    lpips = lpips.replace('backbone_weights="imagenet"', 'backbone_weights="random"')  # no download in tests
    check = "print(distortions.__file__, metric.__file__)\nassert d.shape == (2, 1, 1, 1)\n"
    # -I: no PYTHONPATH, no user site, no current directory on the path
    out = _run([str(venv), "-I", "-c", setup + engine + lpips + check], cwd=tmp_path)
    site = str(venv.parent.parent)
    assert all(path.startswith(site) for path in out.split()), out  # the installed copies, not the checkout's


def test_no_platform_package_is_importable_from_the_install(venv, tmp_path):
    probe = f"import importlib.util as u; print([n for n in {PLATFORM_PACKAGES!r} if u.find_spec(n)])"
    assert _run([str(venv), "-I", "-c", probe], cwd=tmp_path).strip() == "[]"


def test_the_console_script_runs(venv, tmp_path):
    names = _run([str(venv.parent / "perceptlab-distortions"), "list"], cwd=tmp_path).split()
    assert "gaussian_blur" in names


def test_the_platform_starts_from_the_repository_without_being_installed(venv, tmp_path):
    """`manage.py` finds platform/ on its own; celery and gunicorn get it from PYTHONPATH as compose and
    the Makefile set it. The interpreter is the fresh one, where no platform package is installed."""
    data = {"PERCEPTLAB_DATA_DIR": str(tmp_path)}
    out = _run([str(venv), "manage.py", "check"], cwd=ROOT, env=data)
    assert "no issues" in out
    documented = {**data, "PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}"}
    report = _run([str(venv), "-m", "celery", "-A", "config.celery_app", "report"], cwd=ROOT, env=documented)
    assert "transport:filesystem" in report  # the embedded defaults of config.settings.local
    _run([str(venv), "-m", "gunicorn", "--check-config", "config.wsgi"], cwd=ROOT, env=documented)
