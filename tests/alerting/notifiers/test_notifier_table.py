"""The notifier table enforces itself: every kind has each of its parts, or this fails.

A kind is one module (its settings class beside its notifier class) plus one line
in ``alerting/notifiers/registry.py``; config parsing, channel names and the
construction of notifiers derive from that line. The documentation and the
example file are held to the table here too.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from pathlib import Path

import pytest

from citywatch.alerting.config import AlertingConfig, ReceiverConfig
from citywatch.alerting.notifiers.base import NotifierKind, Placement
from citywatch.alerting.notifiers.config import WebhookConfig
from citywatch.alerting.notifiers.registry import (
    NOTIFIERS,
    channel_kind,
    kind_of_channel,
    load_webhook,
    placed,
    webhook_channel,
)
from citywatch.config import ConfigError

ROOT = Path(__file__).resolve().parents[3]
DOCS = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
EXAMPLE = (ROOT / "citywatch.example.yaml").read_text(encoding="utf-8")
KINDS = list(NOTIFIERS.values())


def _module_path(obj: object) -> str:
    return str(Path(inspect.getfile(obj)).resolve().relative_to(ROOT))  # type: ignore[arg-type]


def _docs_row(name: str) -> list[str]:
    """The cells of the kind's row in the **Notifier kinds** table of docs/configuration.md."""
    table = DOCS.split("**Notifier kinds.**", 1)[1].split("\n\n", 2)[1]
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == f"`{name}`":
            return cells
    raise AssertionError(f"docs/configuration.md: no row for notifier kind {name!r}")


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_every_kind_has_a_notifier_class_and_settings_beside_it(kind: NotifierKind) -> None:
    cls = kind.notifier
    assert inspect.isclass(cls), f"{kind.name}: the notifier must be a class"
    assert inspect.iscoroutinefunction(cls.notify), f"{kind.name}: no async notify()"
    assert re.fullmatch(r"[a-z][a-z0-9_]*", kind.name), f"{kind.name}: not a channel name"
    if kind.placement is Placement.PUSH:
        assert kind.config is None, f"{kind.name}: a push kind is configured by mqtt:"
        return
    cfg = kind.config
    assert cfg is not None, f"{kind.name}: no settings class"
    assert dataclasses.is_dataclass(cfg), f"{kind.name}: settings must be a dataclass"
    assert cfg.__dataclass_params__.frozen, f"{kind.name}: settings must be frozen"  # type: ignore[attr-defined]
    assert callable(getattr(cfg, "validate", None)), f"{kind.name}: settings must validate"
    assert cfg.__module__ == cls.__module__, f"{kind.name}: settings not beside the notifier"
    params = list(inspect.signature(cls).parameters.values())
    assert [p.name for p in params[:2]] == ["cfg", "session"], f"{kind.name}: (cfg, session)"
    assert typing.get_type_hints(cls.__init__)["cfg"] is cfg, f"{kind.name}: cfg's type"


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_every_kind_has_its_row_in_the_docs(kind: NotifierKind) -> None:
    where, settings, module = _docs_row(kind.name)[1:4]
    assert module == f"`{_module_path(kind.notifier)}`"
    assert settings == ("none" if kind.config is None else f"`{kind.config.__name__}`")
    expected = {
        Placement.PUSH: f"`receivers.NAME.{kind.name}`",
        Placement.SERVICE: f"`alerting.{kind.name}`",
        Placement.WEBHOOK: "`receivers.NAME.webhooks[]`",
    }[kind.placement]
    assert where.startswith(expected), f"{kind.name}: configured at {where}, not {expected}"


@pytest.mark.parametrize("kind", placed(Placement.PUSH), ids=lambda k: k.name)
def test_a_push_kind_is_a_receivers_switch(kind: NotifierKind) -> None:
    field = {f.name: f for f in dataclasses.fields(ReceiverConfig)}[kind.name]
    assert typing.get_type_hints(ReceiverConfig)[kind.name] is bool and field.default is True
    assert f"{kind.name}: true" in EXAMPLE
    assert f"| `receivers.NAME.{kind.name}` |" in DOCS
    assert kind_of_channel(kind.name) is kind and channel_kind(kind.name) == kind.name


@pytest.mark.parametrize("kind", placed(Placement.SERVICE), ids=lambda k: k.name)
def test_a_service_kind_is_a_section_of_alerting(kind: NotifierKind) -> None:
    field = {f.name: f for f in dataclasses.fields(AlertingConfig)}[kind.name]
    assert typing.get_type_hints(AlertingConfig)[kind.name] == kind.config | None
    assert field.default is None, f"alerting.{kind.name} must be off unless configured"
    assert re.search(rf"^  {kind.name}: null ", EXAMPLE, re.MULTILINE)
    assert f"| `{kind.name}` | mapping |" in DOCS
    assert kind_of_channel(kind.name) is kind and channel_kind(kind.name) == kind.name


@pytest.mark.parametrize("kind", placed(Placement.WEBHOOK), ids=lambda k: k.name)
def test_a_webhook_kind_is_read_into_its_own_settings(kind: NotifierKind) -> None:
    assert kind.config is not None and issubclass(kind.config, WebhookConfig)
    cfg = load_webhook({"kind": kind.name, "url": "https://h/x"}, "w")
    assert type(cfg) is kind.config and cfg.kind == kind.name
    channel = webhook_channel(cfg)
    assert channel.startswith(f"webhook:{kind.name}:")
    assert kind_of_channel(channel) is kind and channel_kind(channel) == kind.name
    kind_row = next(line for line in DOCS.splitlines() if line.startswith("| `kind` |"))
    assert f"`{kind.name}`" in kind_row, f"{kind.name}: not in the webhook `kind` row"
    assert kind.name in EXAMPLE.split("webhook kinds:", 1)[1].splitlines()[0]


def test_webhook_settings_classes_are_distinct_and_the_refusal_lists_the_table() -> None:
    hooks = placed(Placement.WEBHOOK)
    assert len({k.config for k in hooks}) == len(hooks)
    with pytest.raises(ConfigError) as info:
        load_webhook({"kind": "mqtt", "url": "https://h/x"}, "w")
    assert info.value.key == "w.kind"
    assert info.value.problem.startswith(f"must be one of {', '.join(k.name for k in hooks)},")


def test_no_channel_names_a_kind_at_the_wrong_place() -> None:
    assert kind_of_channel("webhook:mqtt:0123abcd") is None
    assert kind_of_channel("wecom") is None
    assert kind_of_channel("sms") is None
