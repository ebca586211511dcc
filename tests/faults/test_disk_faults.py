"""The library disk is full (a small tmpfs holding the library and the music dir): new
loops are skipped with one warning each, nothing already saved is corrupted or left
half-written, playback goes on from memory without a gap, and `save` reports the error."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import subprocess
import time
from pathlib import Path

import pytest
import soundfile as sf

from tests.faults.conftest import Pinger, assert_no_gap, fault_config, start_daemon

pytestmark = pytest.mark.slow
NO_SPACE = "No space left on device"


def mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needed for a full disk): {r.stderr.strip()}")


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full (the daemon's loops may have filled it
    already: the file was created before the daemon started, so it can always be opened)."""
    path = directory / "filler"
    chunk = b"\0" * 65536
    with open(path, "ab") as fh:
        while True:
            try:
                fh.write(chunk)
                fh.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    with contextlib.suppress(OSError), open(path, "ab") as fh:
        for _ in range(65536):  # the last bytes, one at a time
            fh.write(b"\0")
            fh.flush()
    return path


def digests(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    root = tmp_path_factory.mktemp("disk")
    disk = root / "disk"
    mount_tmpfs(disk, "6m")
    (disk / "filler").touch()
    cfg = fault_config(
        root / "out.wav",
        playback={"min_play": 3600},
        library={"dir": str(disk / "loops"), "music_dir": str(disk / "music"), "max_mb": 10},
    )
    d = None
    try:
        d = start_daemon(root, cfg)
        # At least two loops stored before the disk fills.
        d.wait_status(lambda s: s["library"]["loops"] >= 2, 60, "two stored loops")
        d.wait_status(lambda s: not s["generating"], 30, "the producer to settle")
        yield d, disk
    finally:
        if d is not None:
            d.stop()
            d.close()
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_full_disk_skips_new_loops_and_keeps_playing(full):
    d, disk = full
    loops = disk / "loops"
    saved = digests(loops)
    assert any(n.endswith(".flac") for n in saved)
    filler = fill(disk)
    st0 = d.status()
    log_lines = d.log().count("\n")
    start = d.frames()
    with Pinger(d) as pinger:
        d.ok("prompt", "disk full")  # a new generation now
        st = d.wait_status(lambda s: s["failures"] >= st0["failures"] + 1, 60, "a store failure")
        time.sleep(1.0)
    pinger.check()
    assert NO_SPACE in st["last_error"], st["last_error"]
    assert st["state"] == "playing" and st["loop"]["id"] == st0["loop"]["id"]
    new_log = d.log().splitlines()[log_lines:]
    warnings = [line for line in new_log if NO_SPACE in line]
    assert 1 <= len(warnings) <= st["failures"] - st0["failures"], new_log
    assert "Traceback" not in "\n".join(new_log), new_log
    time.sleep(0.2)
    assert_no_gap(d.samples()[start:], "with the disk full")
    # Nothing saved was touched; nothing half-written was left behind.
    assert digests(loops) == saved
    for name in saved:
        if name.endswith(".flac"):
            audio, rate = sf.read(loops / name, dtype="float32")
            assert rate == 48000 and len(audio) > 48000
    # `save` says why it cannot, and leaves no partial file.
    r = d.ctl("save", "full.flac")
    assert r.returncode == 1, r.stdout
    assert NO_SPACE in r.stderr and r.stderr.count("\n") == 1, r.stderr
    music = disk / "music"
    assert not music.exists() or not any(music.rglob("*")), list(music.rglob("*"))
    # Space again: generation and saving work again.
    filler.unlink()
    d.ok("prompt", "disk has room again")
    d.wait_status(lambda s: s["consecutive_failures"] == 0, 60, "a stored loop")
    assert d.ctl("save", "ok.flac").returncode == 0
    assert (music / "ok.flac").exists() and (music / "ok.json").exists()
