"""The audit log's group commit: every record is written once and synced before ``record`` returns; the
records that arrive while a write is in progress go out together in the next one; a failed write is an
error for each caller whose record it held."""

from __future__ import annotations

import json
import threading

import pytest

from api.audit import AuditLog


def test_concurrent_records_are_each_written_once(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    threads = [threading.Thread(target=lambda i=i: [log.record(key_id=f"k{i}", n=n) for n in range(25)])
               for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert sorted((r["key_id"], r["n"]) for r in records) == sorted((f"k{i}", n) for i in range(16) for n in range(25))
    assert 1 <= log.writes <= 400


def test_records_queued_during_a_write_go_out_together(tmp_path, monkeypatch):
    log = AuditLog(tmp_path / "audit.jsonl")
    real_write = log._write
    started, release = threading.Event(), threading.Event()
    sizes = []

    def slow_first_write(data: bytes) -> None:
        sizes.append(data.count(b"\n"))
        if len(sizes) == 1:
            started.set()
            assert release.wait(10)
        real_write(data)

    monkeypatch.setattr(log, "_write", slow_first_write)
    done = []
    first = threading.Thread(target=lambda: done.append(log.record(key_id="first")))
    first.start()
    assert started.wait(10)
    others = [threading.Thread(target=lambda i=i: done.append(log.record(key_id=f"k{i}"))) for i in range(5)]
    for t in others:
        t.start()
    while len(log._pending) < 5:  # all five queued behind the write in progress
        threading.Event().wait(0.01)
    assert done == []  # nobody returned before their line was synced
    release.set()
    for t in [first, *others]:
        t.join(10)
    assert sizes == [1, 5] and log.writes == 2 and len(done) == 6
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 6


def test_a_failed_write_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "audit.jsonl").mkdir()  # a folder where the file should be
    log = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(OSError, match="audit log .*audit.jsonl could not be written"):
        log.record(key_id="k")
    (tmp_path / "audit.jsonl").rmdir()
    log.record(key_id="after")  # the next record is written again
    assert [json.loads(x)["key_id"] for x in (tmp_path / "audit.jsonl").read_text().splitlines()] == ["after"]
