import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _spec() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


APP_SERVICES = ("web", "worker", "gpu-worker", "beat", "migrate")
STORAGE_ENV = (
    "PERCEPTLAB_STORAGE",
    "AWS_STORAGE_BUCKET_NAME",
    "AWS_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_S3_REGION_NAME",
)


def test_compose_file_declares_the_topology():
    spec = _spec()
    assert set(spec["services"]) == {
        "proxy",
        "postgres",
        "redis",
        "minio",
        "minio-init",
        "migrate",
        "web",
        "worker",
        "gpu-worker",
        "beat",
    }
    gpu = spec["services"]["gpu-worker"]
    assert "-Q gpu" in gpu["command"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "-Q default" in spec["services"]["worker"]["command"]


def test_app_containers_share_nothing_but_postgres_redis_and_the_object_store():
    """N web replicas and N workers: no volume of any kind on an app container (a named volume would be a
    shared disk on one host and missing on the next), every file in the bucket through the S3 settings."""
    services = _spec()["services"]
    for name in APP_SERVICES:
        svc = services[name]
        assert not svc.get("volumes"), f"{name} mounts {svc.get('volumes')}"
        env = svc["environment"]
        assert env["PERCEPTLAB_STORAGE"] == "s3", name
        assert all(env.get(key) for key in STORAGE_ENV), name
        assert "MEDIA_ROOT" not in env, name
        needs = ("postgres",) if name == "migrate" else ("postgres", "redis", "minio-init")
        for dependency in needs:
            assert dependency in svc["depends_on"], (name, dependency)
    env = services["web"]["environment"]
    assert env["AWS_S3_ENDPOINT_URL"].endswith("http://minio:9000}")
    assert env["AWS_SECRET_ACCESS_KEY"].startswith("${MINIO_ROOT_PASSWORD:?")  # no default password
    assert services["minio"]["image"].startswith("minio/minio")
    assert services["minio"]["environment"]["MINIO_ROOT_PASSWORD"] == env["AWS_SECRET_ACCESS_KEY"]
    init = " ".join(services["minio-init"]["entrypoint"])
    assert "mc mb --ignore-existing" in init and "mc anonymous set none" in init  # a private bucket
    assert not services["minio"].get("ports")  # the object store is reachable inside the network only
    assert set(_spec()["volumes"]) == {"pgdata", "objects", "caddy_data", "caddy_config"}


def test_replicas_are_configurable_and_migrations_run_once():
    services = _spec()["services"]
    assert services["web"]["deploy"]["replicas"] == "${WEB_REPLICAS:-2}"
    assert services["worker"]["deploy"]["replicas"] == "${WORKER_REPLICAS:-1}"
    assert services["gpu-worker"]["deploy"]["replicas"] == "${GPU_WORKER_REPLICAS:-1}"
    assert services["beat"]["deploy"]["replicas"] == 1  # a second beat would send each periodic task twice
    # N web replicas must not race to migrate: one service migrates, the others wait for it to finish
    assert "migrate" in services["migrate"]["command"]
    assert "migrate" not in services["web"]["command"]
    for name in ("web", "worker", "gpu-worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "migrate" not in services["migrate"]["depends_on"]


def test_only_the_tls_proxy_is_published_and_it_balances_over_the_web_replicas():
    services = _spec()["services"]
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"proxy"}  # gunicorn (plain HTTP) is reachable only inside the compose network
    proxy = services["proxy"]
    assert proxy["image"].startswith("caddy:") and {"80:80", "443:443"} <= set(proxy["ports"])
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert not any("media" in mount for mount in proxy["volumes"])  # nothing served from a disk
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    block = re.search(r"reverse_proxy \{(.*?)\n\t\}", caddyfile, re.S).group(1)
    # every replica's address, from the compose network's DNS, re-read while running
    assert re.search(r"dynamic a \{\s*name web\s*port 8000\s*refresh \d+s\s*\}", block)
    assert "lb_policy round_robin" in block
    assert "file_server" not in caddyfile and "root *" not in caddyfile
    assert "\tlog" not in caddyfile  # no proxy access log (it would record query strings)
    web = services["web"]
    assert web["environment"]["PERCEPTLAB_TRUSTED_PROXIES"] == "1"
    assert web["environment"]["SECRET_KEY"].startswith("${SECRET_KEY:?")  # the shared settings still apply
    assert web["environment"]["SERVE_MEDIA"] == "false"
    assert services["worker"]["environment"].get("PERCEPTLAB_TRUSTED_PROXIES") is None


def test_gunicorn_access_log_has_no_query_strings_referers_or_user_agents():
    from core.logs import GUNICORN_ACCESS_LOG_FORMAT

    spec = _spec()
    argv = shlex.split(shlex.split(spec["services"]["web"]["command"])[2])
    assert "--access-logfile" in argv
    fmt = argv[argv.index("--access-logformat") + 1]
    assert fmt == GUNICORN_ACCESS_LOG_FORMAT
    assert argv[argv.index("--logger-class") + 1] == "core.access_log.GunicornLogger"  # no HIT tokens
    # the load test runs gunicorn with production's keep-alive, which outlasts the proxy's idle upstream
    # connections (a POST is never sent on a connection gunicorn is closing)
    from devtools.loadtest import GUNICORN_KEEPALIVE_S

    assert argv[argv.index("--keep-alive") + 1] == str(GUNICORN_KEEPALIVE_S)
    caddy = re.search(
        r"transport http \{\s*keepalive (\d+)s\s*\}", (ROOT / "deploy" / "Caddyfile").read_text()
    )
    assert caddy and int(caddy.group(1)) < GUNICORN_KEEPALIVE_S
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
    env = {"SECRET_KEY": "x" * 40, "MINIO_ROOT_PASSWORD": "y" * 16, "PATH": "/usr/bin:/bin:/usr/local/bin"}
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
        env={"PATH": env["PATH"], "MINIO_ROOT_PASSWORD": env["MINIO_ROOT_PASSWORD"]},
    )
    assert no_key.returncode != 0 and "SECRET_KEY" in no_key.stderr
    no_password = subprocess.run(
        [*cmd, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        env={"PATH": env["PATH"], "SECRET_KEY": env["SECRET_KEY"]},
    )
    assert no_password.returncode != 0 and "MINIO_ROOT_PASSWORD" in no_password.stderr
