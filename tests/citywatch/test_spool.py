"""The on-disk spool: FIFO order, restart, size limit and write failures."""

from __future__ import annotations

import builtins
import errno
import os
from pathlib import Path
from typing import Any

import pytest

from citywatch.influx.spool import Spool, SpoolFull, SpoolUnwritable


def drain(spool: Spool) -> list[bytes]:
    out = []
    while (head := spool.peek()) is not None:
        seq, body = head
        out.append(body)
        spool.remove(seq)
    return out


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def assert_consistent(spool: Spool) -> None:
    on_disk = sorted(spool.dir.glob("*.lp"))
    assert len(spool) == len(on_disk)
    assert spool.bytes == sum(p.stat().st_size for p in on_disk)


@pytest.fixture(params=[True, False], ids=["fsync", "no-fsync"])
def spool(request: pytest.FixtureRequest, tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool", 1 << 20, fsync=request.param)


def test_new_spool_is_empty(spool: Spool) -> None:
    assert spool.dir.is_dir()
    assert len(spool) == 0
    assert spool.bytes == 0
    assert spool.peek() is None
    assert spool.writable()


def test_fifo_order(spool: Spool) -> None:
    bodies = [f"m f={i}i {i}".encode() for i in range(5)]
    for body in bodies:
        spool.append(body)
    assert len(spool) == 5
    assert spool.bytes == sum(map(len, bodies))
    assert_consistent(spool)
    assert drain(spool) == bodies
    assert len(spool) == 0
    assert spool.bytes == 0
    assert files(spool.dir) == []


def test_peek_does_not_remove(spool: Spool) -> None:
    spool.append(b"one")
    spool.append(b"two")
    first = spool.peek()
    assert first is not None
    assert spool.peek() == first
    assert first[1] == b"one"
    assert len(spool) == 2


def test_remove_then_append_keeps_order(spool: Spool) -> None:
    spool.append(b"a")
    spool.append(b"b")
    head = spool.peek()
    assert head is not None
    spool.remove(head[0])
    spool.append(b"c")
    assert drain(spool) == [b"b", b"c"]


def test_binary_bodies_are_kept_exactly(spool: Spool) -> None:
    body = bytes(range(256)) * 3  # e.g. a gzip'd batch
    spool.append(body)
    head = spool.peek()
    assert head is not None
    assert head[1] == body


def test_reopen_finds_segments_in_order_and_continues_numbering(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    first = Spool(d, 1 << 20)
    for i in range(12):  # more than 9, so numeric and text order must agree
        first.append(f"batch {i}".encode())
    head = first.peek()
    assert head is not None
    first.remove(head[0])
    last_seq = max(int(p.stem) for p in d.glob("*.lp"))

    again = Spool(d, 1 << 20)
    assert len(again) == 11
    assert again.bytes == first.bytes
    assert_consistent(again)
    again.append(b"after restart")
    newest = max(int(p.stem) for p in d.glob("*.lp"))
    assert newest == last_seq + 1
    assert drain(again) == [f"batch {i}".encode() for i in range(1, 12)] + [b"after restart"]


def test_reopen_after_draining_does_not_reuse_order(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    s = Spool(d, 1 << 20)
    s.append(b"x")
    drain(s)
    again = Spool(d, 1 << 20)
    again.append(b"y")
    again.append(b"z")
    assert drain(again) == [b"y", b"z"]


def test_leftover_tmp_file_is_removed_at_start(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    s = Spool(d, 1 << 20)
    s.append(b"complete")
    (d / f"{2:020d}.tmp").write_bytes(b"half a bat")  # a crash during append
    again = Spool(d, 1 << 20)
    assert not list(d.glob("*.tmp"))
    assert len(again) == 1
    assert again.bytes == len(b"complete")
    assert drain(again) == [b"complete"]


def test_foreign_files_are_ignored(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    d.mkdir()
    (d / "README").write_text("not a batch")
    (d / "notes.lp").write_text("not numbered")
    s = Spool(d, 1 << 20)
    assert len(s) == 0
    s.append(b"x")
    assert drain(s) == [b"x"]


def test_spool_full_writes_nothing(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool", 10)
    s.append(b"12345")
    s.append(b"67890")  # exactly at the limit is allowed
    before = files(s.dir)
    with pytest.raises(SpoolFull, match="limit 10"):
        s.append(b"x")
    assert files(s.dir) == before
    assert len(s) == 2
    assert s.bytes == 10
    assert not s.writable()
    assert_consistent(s)


def test_a_single_batch_larger_than_the_limit(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool", 100)
    with pytest.raises(SpoolFull):
        s.append(b"x" * 101)
    assert files(s.dir) == []
    assert s.bytes == 0


def test_room_comes_back_after_remove(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool", 10)
    s.append(b"1234567890")
    with pytest.raises(SpoolFull):
        s.append(b"a")
    head = s.peek()
    assert head is not None
    s.remove(head[0])
    s.append(b"a")
    assert drain(s) == [b"a"]


def test_limit_counts_what_was_found_at_start(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    Spool(d, 100).append(b"x" * 60)
    again = Spool(d, 100)
    with pytest.raises(SpoolFull):
        again.append(b"y" * 41)
    again.append(b"y" * 40)
    assert again.bytes == 100


def _enospc(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_during_write_leaves_no_partial_file(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool.append(b"kept")
    real_open = builtins.open

    class FailingFile:
        """Writes half the data, then the disk is full."""

        def __init__(self, path: Any, mode: str) -> None:
            self.fh = real_open(path, mode)

        def __enter__(self) -> FailingFile:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

        def write(self, data: bytes) -> int:
            self.fh.write(data[: len(data) // 2])
            self.fh.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(builtins, "open", FailingFile)
    with pytest.raises(SpoolFull, match="No space left"):
        spool.append(b"this batch does not fit on the disk")
    monkeypatch.undo()
    assert not list(spool.dir.glob("*.tmp"))
    assert len(spool) == 1
    assert spool.bytes == len(b"kept")
    assert_consistent(spool)
    spool.append(b"later")
    assert drain(spool) == [b"kept", b"later"]


def test_failed_rename_leaves_no_partial_file(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool.append(b"kept")
    monkeypatch.setattr(os, "replace", _enospc)
    with pytest.raises(SpoolFull):
        spool.append(b"lost")
    monkeypatch.undo()
    assert files(spool.dir) == [f"{1:020d}.lp"]
    assert spool.bytes == len(b"kept")
    assert_consistent(spool)
    spool.append(b"next")
    assert drain(spool) == [b"kept", b"next"]


def test_open_failure_raises_spool_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Spool(tmp_path / "spool", 1 << 20)
    monkeypatch.setattr(builtins, "open", _enospc)
    with pytest.raises(SpoolFull):
        s.append(b"x")
    monkeypatch.undo()
    assert files(s.dir) == []
    assert len(s) == 0
    assert s.bytes == 0


def test_fsync_failure_raises_spool_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Spool(tmp_path / "spool", 1 << 20, fsync=True)
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(SpoolFull):
        s.append(b"x")
    monkeypatch.undo()
    assert files(s.dir) == []
    assert s.bytes == 0


def test_batch_deleted_behind_the_spools_back_is_skipped(spool: Spool) -> None:
    spool.append(b"a")
    spool.append(b"b")
    head = spool.peek()
    assert head is not None
    (spool.dir / f"{head[0]:020d}.lp").unlink()
    assert spool.peek() == (head[0] + 1, b"b")
    assert len(spool) == 1
    assert spool.bytes == 1


def test_remove_of_an_unknown_sequence_is_harmless(spool: Spool) -> None:
    spool.append(b"a")
    spool.remove(999)
    assert len(spool) == 1
    assert spool.bytes == 1


def test_bytes_and_len_stay_consistent_through_a_mixed_workload(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool", 200)
    expected: list[bytes] = []
    refused = 0
    for i in range(60):
        body = bytes([65 + i % 26]) * (i % 17 + 1)
        try:
            s.append(body)
            expected.append(body)
        except SpoolFull:
            refused += 1
        if i % 3 == 0 and (head := s.peek()) is not None:
            assert head[1] == expected.pop(0)
            s.remove(head[0])
        assert len(s) == len(expected)
        assert s.bytes == sum(map(len, expected))
        assert_consistent(s)
    assert refused > 0
    assert drain(s) == expected


def test_directory_fsync_failure_keeps_counts_and_disk_in_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Spool(tmp_path / "spool", 1 << 20, fsync=True)
    monkeypatch.setattr(s, "_sync_dir", lambda: _enospc())
    # The rename is the commit point: the batch is stored, and counted, even so.
    s.append(b"x")
    monkeypatch.undo()
    assert_consistent(s)
    assert len(s) == 1


def test_a_directory_that_cannot_be_read_at_start_is_read_later(tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    parent.write_bytes(b"")  # a file where the spool's parent should be: root or not
    s = Spool(parent / "spool", 1 << 20)
    assert not s.opened and s.error is not None and not s.writable()
    with pytest.raises(SpoolUnwritable):
        s.append(b"x")
    with pytest.raises(SpoolUnwritable):
        s.peek()
    assert not s.probe()
    parent.unlink()
    parent.mkdir()
    assert s.probe()
    assert s.opened and s.error is None and s.writable()
    s.append(b"x")
    assert drain(s) == [b"x"]


def test_a_failed_removal_keeps_the_batch_listed(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool", 1 << 20)
    s.append(b"a")
    head = s.peek()
    assert head is not None
    aside = tmp_path / "aside"
    s.dir.rename(aside)
    s.dir.write_bytes(b"")  # every operation in it fails now, as root too
    with pytest.raises(SpoolUnwritable, match="cannot remove"):
        s.remove(head[0])
    assert len(s) == 1 and s.error is not None
    s.dir.unlink()
    aside.rename(s.dir)
    s.remove(head[0])
    assert len(s) == 0 and s.bytes == 0 and s.error is None


def test_rewrite_replaces_a_batch_and_keeps_the_counts(spool: Spool) -> None:
    spool.append(b"abcdef")
    spool.append(b"gh")
    head = spool.peek()
    assert head is not None
    spool.rewrite(head[0], b"cd")
    assert spool.bytes == 4
    assert_consistent(spool)
    assert drain(spool) == [b"cd", b"gh"]


def test_quarantine_sets_a_batch_aside(spool: Spool) -> None:
    spool.append(b"\x1f\x8bnot gzip")
    spool.append(b"next")
    head = spool.peek()
    assert head is not None
    kept = spool.quarantine(head[0])
    assert kept.read_bytes() == b"\x1f\x8bnot gzip"
    assert_consistent(spool)
    assert drain(spool) == [b"next"]
    assert Spool(spool.dir, 1 << 20).peek() is None  # not read again after a restart


def test_probe_wants_room_for_the_batch_the_disk_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Spool(tmp_path / "spool", 1 << 20)
    monkeypatch.setattr(s, "_write", lambda path, body: _enospc())
    with pytest.raises(SpoolUnwritable, match="No space left"):
        s.append(b"y" * 5000)
    monkeypatch.undo()
    tight = os.statvfs_result((4096, 4096, 100, 1, 1, 100, 50, 50, 0, 255))
    monkeypatch.setattr(os, "statvfs", lambda path: tight)
    assert not s.probe()  # 4096 bytes free, 5000 wanted
    assert s.error is not None and "No space left" in s.error
    monkeypatch.undo()
    assert s.probe()
    assert s.error is None
