"""Subscriptions for scale-out: shared groups and city partitions."""

from citywatch.collectors.topics import Router


def test_shared_and_partitioned_subscriptions() -> None:
    r = Router()
    assert r.subscriptions(share_group="g") == ["$share/g/citywatch/#", "$share/g/owntracks/+/+"]
    assert r.subscriptions(("321200", "320100"), owntracks=False) == [
        "citywatch/321200/#",
        "citywatch/320100/#",
    ]
