import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_file_declares_the_topology():
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert set(spec["services"]) == {"proxy", "postgres", "redis", "web", "worker", "gpu-worker", "beat"}
    gpu = spec["services"]["gpu-worker"]
    assert "-Q gpu" in gpu["command"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "-Q default" in spec["services"]["worker"]["command"]


def test_only_the_tls_proxy_is_published_and_it_serves_stimuli_read_only():
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = spec["services"]
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"proxy"}  # gunicorn (plain HTTP) is reachable only inside the compose network
    proxy = services["proxy"]
    assert proxy["image"].startswith("caddy:") and {"80:80", "443:443"} <= set(proxy["ports"])
    mounts = proxy["volumes"]
    assert "media:/srv/media:ro" in mounts and "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in mounts
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert (
        "reverse_proxy web:8000" in caddyfile
        and "handle @stimulus {" in caddyfile
        and "root * /srv" in caddyfile
    )
    # The proxy serves what Django's media view serves, no more: stimuli/<sha256>.png, as image/png,
    # sandboxed.
    stimulus = re.search(r"@stimulus path_regexp (\S+)", caddyfile).group(1)
    good = "/media/stimuli/" + "ab" * 32 + ".png"
    assert re.match(stimulus, good)
    for bad in (
        "/media/stimuli/x.html",
        "/media/stimuli/" + "ab" * 32 + ".png.js",
        "/media/exports/a.zip",
        "/media/stimuli/../secret_key",
        "/media/stimuli/" + "AB" * 32 + ".png",
    ):
        assert not re.match(stimulus, bad), bad
    assert "header Content-Type image/png" in caddyfile and "sandbox" in caddyfile
    assert "\tlog" not in caddyfile  # no proxy access log (it would record query strings)
    web = services["web"]
    assert web["environment"]["PERCEPTLAB_TRUSTED_PROXIES"] == "1"
    assert web["environment"]["SECRET_KEY"].startswith("${SECRET_KEY:?")  # the shared settings still apply
    assert web["environment"]["SERVE_MEDIA"] == "false"
    assert services["worker"]["environment"].get("PERCEPTLAB_TRUSTED_PROXIES") is None


def test_gunicorn_access_log_has_no_query_strings_referers_or_user_agents():
    from core.logs import GUNICORN_ACCESS_LOG_FORMAT

    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    argv = shlex.split(shlex.split(spec["services"]["web"]["command"])[2])
    assert "--access-logfile" in argv
    fmt = argv[argv.index("--access-logformat") + 1]
    assert fmt == GUNICORN_ACCESS_LOG_FORMAT
    assert "%(U)s" in fmt
    for leaky in (
        "%(r)s",
        "%(q)s",
        "%(f)s",
        "%(a)s",
        "%({",
    ):  # request line, query, referer, user agent, headers
        assert leaky not in fmt


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
    result = subprocess.run(
        [*cmd, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    # the check has teeth: a broken file is rejected, and so is a missing SECRET_KEY
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  web:\n    image: x\n    ports: 8000\n    depends_on: [nowhere]\n")
    assert (
        subprocess.run([*cmd, "-f", str(broken), "config", "-q"], capture_output=True, env=env).returncode
        != 0
    )
    no_key = subprocess.run(
        [*cmd, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        env={"PATH": env["PATH"]},
    )
    assert no_key.returncode != 0 and "SECRET_KEY" in no_key.stderr
