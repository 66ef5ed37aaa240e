"""The command line: configuration errors name the key; the demo runs on its embedded default."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from citywatch.app.cli import main


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYWATCH_")}
    env.update(CITYWATCH_DATA_DIR=str(tmp_path / "var"), CITYWATCH_API_ADDR="127.0.0.1:0")
    return env


def test_check_config_names_the_bad_key(tmp_path: Path, capsys: object) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("mqtt:\n  keepalive: soon\n")
    assert main(["check-config", "--config", str(bad)]) == 2
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert "mqtt.keepalive" in err and "duration" in err


def test_check_config_accepts_the_example(capsys: object) -> None:
    example = Path(__file__).resolve().parents[2] / "citywatch.example.yaml"
    assert main(["check-config", "--config", str(example)]) == 0


def test_run_rejects_an_unknown_component(tmp_path: Path, capsys: object) -> None:
    assert main(["run", "--only", "collector,teleporter"]) == 2
    assert "teleporter" in capsys.readouterr().err  # type: ignore[attr-defined]


def test_demo_runs_with_embedded_broker_and_shows_a_summary(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "citywatch",
            "demo",
            "--duration",
            "4",
            "--speedup",
            "60",
            "--devices",
            "12",
        ],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "(embedded)" in out.stdout
    lines = [line for line in out.stdout.splitlines() if "devices online" in line]
    assert lines, out.stdout
    fixes = int(re.search(r"fixes\s+(\d+)", lines[-1]).group(1))  # type: ignore[union-attr]
    spooled = int(re.search(r"spooled\s+(\d+)", lines[-1]).group(1))  # type: ignore[union-attr]
    assert fixes > 0 and spooled > 0
    assert any((tmp_path / "var" / "spool").iterdir())


def test_the_example_file_lists_every_default() -> None:
    from citywatch.app.settings import Settings, load_settings

    example = Path(__file__).resolve().parents[2] / "citywatch.example.yaml"
    assert load_settings(example, env={}) == Settings()
