"""Atomic writers: the target is the old file or the complete new one, never half-written; no temp files left."""

from __future__ import annotations

import json
import os
import stat

import pytest

from lit_multimodal.files import atomic_path, write_json_atomic, write_text_atomic
from lit_multimodal.training.results import write_json_atomic as reexported


def test_json_round_trip_creates_parents_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a" / "b" / "result.json"
    write_json_atomic(path, {"b": 1, "a": tmp_path})
    assert path.read_text() == json.dumps({"a": str(tmp_path), "b": 1}, indent=2, sort_keys=True) + "\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json"]
    assert reexported is write_json_atomic


def test_a_failing_writer_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = write_text_atomic(tmp_path / "x.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_a_file_written_owner_only_gets_the_ordinary_mode(tmp_path):
    path = tmp_path / "tensors.bin"
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"\0")
        os.chmod(tmp, 0o600)  # what safetensors and mkstemp create
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
