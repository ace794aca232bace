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


def test_docker_compose_config_accepts_the_file(tmp_path):
    cmd = _compose_cmd()
    if cmd is None:
        pytest.skip("no docker compose client on this machine")
    env = {"SECRET_KEY": "x" * 40, "PATH": "/usr/bin:/bin:/usr/local/bin"}
    result = subprocess.run([*cmd, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], capture_output=True,
                            text=True, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    # the check has teeth: a broken file is rejected, and so is a missing SECRET_KEY
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  web:\n    image: x\n    ports: 8000\n    depends_on: [nowhere]\n")
    assert subprocess.run([*cmd, "-f", str(broken), "config", "-q"], capture_output=True, env=env).returncode != 0
    no_key = subprocess.run([*cmd, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], capture_output=True,
                            text=True, env={"PATH": env["PATH"]})  # fmt: skip
    assert no_key.returncode != 0 and "SECRET_KEY" in no_key.stderr
