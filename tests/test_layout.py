"""platform/ is a Django source root, never a package: the stdlib `platform` must keep working."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_platform_dir_is_not_a_package():
    assert (ROOT / "platform" / "config").is_dir()
    assert not (ROOT / "platform" / "__init__.py").exists()


def test_no_init_files_in_the_test_tree():
    assert not list((ROOT / "tests").rglob("__init__.py"))


def test_stdlib_platform_works_inside_pytest_after_django_setup(settings):
    import django

    assert settings.INSTALLED_APPS  # Django is configured
    assert django.VERSION
    assert platform.system() == os.uname().sysname
    assert Path(platform.__file__).parent == Path(os.__file__).parent  # the stdlib module


def test_stdlib_platform_works_inside_manage_py():
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "import platform; print(platform.system(), platform.__file__)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    system, path = result.stdout.strip().splitlines()[-1].split()
    assert system == os.uname().sysname
    assert not path.startswith(str(ROOT))


@pytest.mark.parametrize(
    "name", ["queue", "secrets", "email", "types", "signal", "select", "code", "test", "token"]
)
def test_no_package_shadows_a_stdlib_module(name):
    for base in (ROOT, ROOT / "platform"):
        assert not (base / name / "__init__.py").exists()
        assert not (base / f"{name}.py").exists()
