#!/usr/bin/env python3
"""Build the real-music benchmark corpus: 20 s and 30 s excerpts, 32 kHz mono WAV.

The music comes from Debian packages of free game soundtracks (installed with apt-get
if missing). Every track gives one 20 s and one 30 s excerpt at fixed relative
offsets, so the corpus is reproducible. Clips are written outside the repository
(default ~/.cache/infiniloop-bench/corpus) and never committed.

Usage: python3 benchmarks/corpus.py [--out DIR] [--limit N]
Prints the corpus directory and the number of clips.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)

RATE = 32000
PACKAGES = {
    "pingus-data": "/usr/share/games/pingus/data/music",
    "warzone2100-music": "/usr/share/games/warzone2100/music",
    "extremetuxracer-data": "/usr/share/games/etr/music",
    "neverball-data": "/usr/share/games/neverball/bgm",
}
EXTENSIONS = {".ogg", ".opus", ".it", ".s3m", ".xm", ".mod", ".mp3", ".flac"}
# (excerpt seconds, offset as a fraction of the track's length)
EXCERPTS = ((20.0, 0.15), (30.0, 0.45))
MIN_TRACK_SECONDS = 24.0
MAX_DECODE_SECONDS = 300


def default_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "infiniloop-bench" / "corpus"


def ensure_packages() -> None:
    missing = [p for p, d in PACKAGES.items() if not Path(d).is_dir()]
    if not missing:
        return
    log.info("installing %s", " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    apt = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if os.geteuid() != 0:
        apt.insert(0, "sudo")
    if subprocess.run(apt, env=env, check=False).returncode != 0:
        # a fresh machine may have no package lists yet
        update = ["sudo", "apt-get", "update"] if apt[0] == "sudo" else ["apt-get", "update"]
        subprocess.run(update, env=env, check=False)
        subprocess.run(apt, env=env, check=True)


def decode(path: Path) -> np.ndarray:
    """Decode any format ffmpeg knows (tracker modules included) to 32 kHz mono float."""
    if shutil.which("ffmpeg") is None:
        y, sr = sf.read(path, dtype="float32", always_2d=True)
        import soxr

        return soxr.resample(y.mean(axis=1), sr, RATE)
    cmd = [
        "ffmpeg",
        "-v",
        "error",
        "-nostdin",
        "-i",
        str(path),
        "-t",
        str(MAX_DECODE_SECONDS),
        "-ac",
        "1",
        "-ar",
        str(RATE),
        "-f",
        "f32le",
        "-",
    ]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype="<f4").copy()


def audible(y: np.ndarray) -> np.ndarray:
    """y from its first to its last 100 ms block within 40 dB of the loudest block."""
    w = RATE // 10
    n = y.size // w
    if n == 0:
        return y[:0]
    e = np.mean(y[: n * w].reshape(n, w).astype(np.float64) ** 2, axis=1)
    loud = np.flatnonzero(e > e.max() * 1e-4)
    if e.max() < 1e-8 or loud.size == 0:  # below -80 dBFS: nothing there
        return y[:0]
    return y[loud[0] * w : (loud[-1] + 1) * w]


def tracks() -> list[Path]:
    found = []
    for root in PACKAGES.values():
        for p in sorted(Path(root).rglob("*")):
            if p.suffix.lower() in EXTENSIONS and p.is_file():
                found.append(p)
    return found


def build(out: Path, limit: int | None = None) -> list[Path]:
    ensure_packages()
    out.mkdir(parents=True, exist_ok=True)
    clips: list[Path] = []
    for path in tracks():
        stem = f"{path.parent.name}-{path.stem}".replace(" ", "_")
        wanted = [out / f"{stem}-{int(sec)}s.wav" for sec, _ in EXCERPTS]
        if all(w.exists() for w in wanted):
            clips.extend(wanted)
        else:
            try:
                y = decode(path)
            except subprocess.CalledProcessError as e:
                log.warning(
                    "%s: cannot decode: %s", path, e.stderr.decode(errors="replace").strip()
                )
                continue
            # modules often end early and pad with silence: keep the audible part only
            y = audible(y)
            if y.size < MIN_TRACK_SECONDS * RATE:
                log.info("%s: too short (%.1f s), skipped", path, y.size / RATE)
                continue
            for (sec, frac), dest in zip(EXCERPTS, wanted, strict=True):
                n = int(sec * RATE)
                if y.size < n:
                    continue
                a = min(int(frac * y.size), y.size - n)
                sf.write(dest, y[a : a + n], RATE, subtype="FLOAT")
                clips.append(dest)
        if limit is not None and len(clips) >= limit:
            break
    return clips[:limit] if limit is not None else clips


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=default_dir())
    ap.add_argument("--limit", type=int, default=None, help="stop after N clips")
    a = ap.parse_args(argv)
    clips = build(a.out, a.limit)
    print(f"{a.out}: {len(clips)} clips")
    return 0


if __name__ == "__main__":
    sys.exit(main())
