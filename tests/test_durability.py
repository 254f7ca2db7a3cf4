"""What survives a power cut (docs/reliability.md): a checkpoint file is on disk, and so is
its name in its folder, before the store may name it."""

import os
from pathlib import Path

import numpy as np

from gpbt.engines import vector
from gpbt.engines.vector import _write_npz, read_checkpoint


def test_a_checkpoint_is_fsynced_then_renamed_then_its_folder_fsynced(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):  # a spy: the real fsync runs, on the real file system
        calls.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}"))))
        real_fsync(fd)

    def replace(src, dst):
        calls.append(("replace", Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(vector.os, "fsync", fsync)
    monkeypatch.setattr(vector.os, "replace", replace)
    folder = tmp_path / "checkpoints"
    arrays = {"leaf0": np.arange(6.0)}
    _write_npz(folder / "gen000001.npz", b'{"generation": 1}', arrays)
    _write_npz(folder / "gen000002.npz", b'{"generation": 2}', arrays)
    assert calls == [
        ("fsync", tmp_path),  # the new checkpoints folder's own entry
        ("fsync", folder / "gen000001.tmp.npz"),  # the data
        ("replace", folder / "gen000001.npz"),
        ("fsync", folder),  # the rename
        ("fsync", folder / "gen000002.tmp.npz"),
        ("replace", folder / "gen000002.npz"),
        ("fsync", folder),
    ]
    meta, leaves = read_checkpoint(folder / "gen000002.npz")
    assert meta == {"generation": 2} and np.array_equal(leaves[0], np.arange(6.0))
    assert sorted(p.name for p in folder.iterdir()) == ["gen000001.npz", "gen000002.npz"]
