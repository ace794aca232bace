import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_file_declares_the_topology():
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert set(spec["services"]) == {"postgres", "redis", "web", "worker", "gpu-worker", "beat"}
    gpu = spec["services"]["gpu-worker"]
    assert "-Q gpu" in gpu["command"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "-Q default" in spec["services"]["worker"]["command"]


def _compose_cmd():
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_accepts_the_file():
    cmd = _compose_cmd()
    if cmd is None:
        pytest.skip("no docker compose client on this machine")
    result = subprocess.run([*cmd, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], capture_output=True,
                            text=True, env={"SECRET_KEY": "x" * 40, "PATH": "/usr/bin:/bin:/usr/local/bin"})  # fmt: skip
    assert result.returncode == 0, result.stderr
