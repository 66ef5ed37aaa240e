"""The locks pin what pyproject.toml declares, within its ranges, and nothing declared is unused.

requirements.lock holds the runtime dependencies (the image installs it), requirements-dev.lock
the same pins plus the test and lint tools (scripts/test installs it); scripts/lock makes both.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# Packages used without an import statement: what they are for, where.
NOT_IMPORTED = {
    "tzdata": "zoneinfo's data where the system has none (rules/calendar.py)",
    "pytest": "the test runner",
    "pytest-asyncio": "async tests (asyncio_mode = auto)",
    "mypy": "type checks",
    "ruff": "lint and format",
    "types-pyyaml": "type stubs for mypy",
}
# Distribution name -> import name, where they differ.
IMPORT_NAMES = {
    "paho-mqtt": "paho",
    "prometheus-client": "prometheus_client",
    "grafana-client": "grafana_client",
    "pyyaml": "yaml",
    "chinesecalendar": "chinese_calendar",
    "google-re2": "re2",
}


def _declared(*, extras: bool = True) -> list[Requirement]:
    project = PYPROJECT["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    if extras:
        for extra in project.get("optional-dependencies", {}).values():
            reqs.extend(Requirement(r) for r in extra)
    return reqs


def _pins(lock: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / lock).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, _, version = line.partition("==")
            assert version, f"{lock}: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version.split(";")[0].strip()
    return pins


def _imported_top_names() -> set[str]:
    names: set[str] = set()
    for folder in ("citywatch", "collectors", "rules", "alerting", "api", "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
                elif (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "attr", "") == "importorskip"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    names.add(str(node.args[0].value).split(".")[0])
    return names


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    for lock, extras in (("requirements.lock", False), ("requirements-dev.lock", True)):
        pins = _pins(lock)
        for req in _declared(extras=extras):
            name = canonicalize_name(req.name)
            assert name in pins, f"{req.name} is declared in pyproject.toml but not in {lock}"
            assert req.specifier.contains(pins[name], prereleases=True), (
                f"{lock} pins {req.name}=={pins[name]}, outside pyproject.toml's {req.specifier}"
            )


def test_the_dev_lock_runs_the_runtime_pins() -> None:
    runtime, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    differ = {n: (v, dev.get(n)) for n, v in runtime.items() if dev.get(n) != v}
    assert not differ, f"the tests would run other versions than the service: {differ}"


def test_runtime_dependencies_have_a_major_upper_bound() -> None:
    for raw in PYPROJECT["project"]["dependencies"]:
        req = Requirement(raw)
        if req.name == "tzdata":  # data, released by date; every release is compatible
            continue
        assert any(s.operator == "<" for s in req.specifier), f"{raw}: no upper bound"


def test_every_declared_dependency_is_used() -> None:
    imported = _imported_top_names()
    for req in _declared():
        name = canonicalize_name(req.name)
        if name in NOT_IMPORTED:
            continue
        module = IMPORT_NAMES.get(name, name.replace("-", "_"))
        assert module in imported, f"{req.name} is declared but nothing imports {module!r}"
