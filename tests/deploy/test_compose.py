"""docker-compose.yml and its files: complete, healthy, no secrets; valid for compose itself."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
ONE_SHOT = {"broker-accounts", "api-tokens"}
SECRET = re.compile(r"PASSWORD|TOKEN|SECRET", re.I)


def test_every_long_running_service_restarts_and_has_a_healthcheck() -> None:
    for name, svc in SERVICES.items():
        if name in ONE_SHOT or "profiles" in svc:
            continue
        assert svc.get("restart") == "unless-stopped", name
        assert "healthcheck" in svc, name


def test_state_lives_in_named_volumes() -> None:
    named = set(COMPOSE["volumes"])
    for svc in ("mosquitto", "influxdb", "citywatch", "prometheus", "grafana"):
        mounts = [v.split(":")[0] for v in SERVICES[svc]["volumes"]]
        assert any(m in named for m in mounts), svc


def test_no_secret_is_written_in_the_file() -> None:
    for name, svc in SERVICES.items():
        for key, value in (svc.get("environment") or {}).items():
            if SECRET.search(key) or (isinstance(value, str) and "://" in value and "@" in value):
                assert "${" in str(value), f"{name}.{key} must come from .env"
    example = (ROOT / ".env.example").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "docker-compose.yml").read_text()))
    declared = set(re.findall(r"^([A-Z_]+)=", example, re.M))
    assert used <= declared, f"not in .env.example: {used - declared}"


def test_mounted_files_exist() -> None:
    for name, svc in SERVICES.items():
        for v in svc.get("volumes") or []:
            source = v.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source}"


def test_the_broker_demands_logins_and_applies_the_acls() -> None:
    conf = (ROOT / "deploy/docker/mosquitto.conf").read_text().splitlines()
    lines = [line.strip() for line in conf if line.strip() and not line.startswith("#")]
    # After include_dir, so that they override deploy/mosquitto.conf's lab default.
    assert lines.index("allow_anonymous false") > lines.index(
        "include_dir /mosquitto/config/conf.d"
    )
    assert "acl_file /mosquitto/config/acl" in lines
    assert "./deploy/mosquitto.acl:/mosquitto/config/acl:ro" in SERVICES["mosquitto"]["volumes"]


def test_prometheus_scrapes_the_service() -> None:
    prom = yaml.safe_load((ROOT / "deploy/docker/prometheus.yml").read_text())
    targets = [
        t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    ]
    assert "citywatch:8080" in targets


def test_the_service_config_in_compose_is_valid(tmp_path: Path) -> None:
    from citywatch.app.settings import load_settings

    for name in ("api_duty_token", "api_wall_token"):
        (tmp_path / name).write_text("a-long-enough-token-" + name)
    text = (
        (ROOT / "deploy/docker/citywatch.yaml").read_text().replace("/run/secrets", str(tmp_path))
    )
    path = tmp_path / "citywatch.yaml"
    path.write_text(text)
    s = load_settings(path, env={})
    assert [t.role for t in s.api.tokens] == ["supervisor", "viewer"]


def test_the_dockerfile_runs_as_a_non_root_user() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    user = [line for line in lines if line.startswith("USER ")]
    assert user and user[-1].split()[1] not in ("root", "0")
    assert lines[-2:] == ['ENTRYPOINT ["citywatch"]', 'CMD ["run"]']


def _compose() -> list[str] | None:
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) is None:
            continue
        probe = subprocess.run([*cmd, "version"], capture_output=True)
        if probe.returncode == 0:
            return cmd
    return None


@pytest.mark.skipif(_compose() is None, reason="no docker compose client on this machine")
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    cmd = _compose()
    assert cmd is not None
    env_file = tmp_path / ".env"
    env_file.write_text((ROOT / ".env.example").read_text())
    out = subprocess.run(
        [*cmd, "--env-file", str(env_file), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
