"""`infiniloopd play`: hear the audio engine without the daemon.

Plays each file as a seamless loop for ``--each`` seconds, crossfades to the next,
and cycles until Ctrl-C or SIGTERM, then fades out and exits 0. Files are resampled
to the output rate (soxr) and mapped to the output's channel count.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from pathlib import Path

import numpy as np

from infiniloopd.config import OUTPUT_BACKENDS, load_config
from infiniloopd.errors import UserError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, metavar="LOOP.wav", help="audio files")
    parser.add_argument(
        "--output", choices=OUTPUT_BACKENDS, help="output backend (default: from the config)"
    )
    parser.add_argument(
        "--crossfade", type=float, metavar="S", help="crossfade seconds (default: from config)"
    )
    parser.add_argument(
        "--each", type=float, default=30.0, metavar="S", help="seconds per file (default 30)"
    )
    parser.add_argument(
        "--duration", type=float, metavar="S", help="stop (with a fade-out) after S seconds"
    )
    parser.add_argument("--config", type=Path, metavar="PATH", help="config file")


def main(args: argparse.Namespace) -> int:
    if args.each <= 0:
        raise UserError(f"--each: expected seconds above 0, got {args.each:g}")
    if args.crossfade is not None and not 0 <= args.crossfade <= 60:
        raise UserError(f"--crossfade: expected seconds between 0 and 60, got {args.crossfade:g}")
    cfg = load_config(args.config)
    out_cfg = cfg.output
    if args.output:
        out_cfg.backend = args.output
        if args.output == "file" and out_cfg.path is None:
            raise UserError("--output file: set output.path in the config to a WAV file path")
    crossfade = cfg.playback.crossfade if args.crossfade is None else args.crossfade
    loops = [(str(path), load_loop(path, out_cfg.rate, out_cfg.channels)) for path in args.files]

    from infiniloopd.outputs import make_output
    from infiniloopd.player import Player

    output = make_output(out_cfg)
    if not getattr(output, "paced", True):
        # Rendered as fast as possible: time is counted in frames written, not on a clock.
        if args.duration is None:
            raise UserError(
                "--duration: needed with an output that is not paced in real time "
                "(output.realtime: false), or it would write without end"
            )
        _render(output, out_cfg, cfg.playback.volume / 100.0, loops, crossfade, args)
        return 0
    player = Player(
        output,
        rate=out_cfg.rate,
        channels=out_cfg.channels,
        block_ms=out_cfg.block_ms,
        volume=cfg.playback.volume / 100.0,
    )
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda _s, _f: stop.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        player.start()
        log.info("playing to %s", player.status().output)
        _cycle(player, loops, crossfade, args.each, args.duration, stop)
        player.fade_out(0.5)
    finally:
        player.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _cycle(player, loops, crossfade: float, each: float, duration: float | None, stop) -> None:
    """Play the loops in turn, each for `each` seconds of its own playing time."""
    deadline = None if duration is None else time.monotonic() + duration
    index = 0
    while True:
        key, audio = loops[index]
        log.info("loop %s (%.2f s)", key, audio.shape[0] / player.rate)
        player.play_loop(key, audio, crossfade)
        while True:
            if stop.wait(0.05) or (deadline is not None and time.monotonic() >= deadline):
                return
            status = player.status()
            if len(loops) > 1 and status.key == key and status.played >= each:
                break
        index = (index + 1) % len(loops)


def _render(output, out_cfg, volume: float, loops, crossfade: float, args) -> None:
    """The loops into an unpaced output: exactly `--duration` seconds of audio, then a
    0.5 s fade-out, switching every `--each` seconds of audio, with the player's mixer."""
    from infiniloopd.player.mixer import Mixer

    rate = out_cfg.rate
    block = max(16, round(rate * out_cfg.block_ms / 1000.0))
    mixer = Mixer(rate, out_cfg.channels, block, volume=volume)
    buf = np.zeros((block, out_cfg.channels), dtype=np.float32)
    total = round(args.duration * rate)
    each = round(args.each * rate) if len(loops) > 1 else total + 1
    fade = round(0.5 * rate)
    output.open(rate, out_cfg.channels)
    try:
        written, index, switch_at = 0, 0, 0
        while written < total + fade:
            if written == total:
                mixer.stop(0.5)
            if written == switch_at and written < total:
                key, audio = loops[index]
                mixer.play(key, audio, crossfade)
                index = (index + 1) % len(loops)
                switch_at += each
            # Blocks end exactly at the next event (switch, stop, end).
            events = [e for e in (switch_at, total, total + fade) if e > written]
            n = min(block, min(events) - written)
            mixer.render_into(buf[:n])
            output.write(buf[:n])
            written += n
    finally:
        output.close()
    log.info("wrote %.1f s of audio to %s", written / rate, output.describe())


def load_loop(path: Path, rate: int, channels: int) -> np.ndarray:
    """Read an audio file as float32 (frames, channels) at `rate`; UserError naming the file."""
    from infiniloopd.audiofile import read_audio

    data, sr = read_audio(path, always_2d=True)
    if data.shape[0] == 0:
        raise UserError(f"{path}: no audio in the file")
    if not np.all(np.isfinite(data)):
        raise UserError(f"{path}: the audio contains NaN or infinite samples")
    data = map_channels(data, channels)
    if sr != rate:
        data = resample_loop(data, sr, rate)
    return np.ascontiguousarray(data, dtype=np.float32)


def map_channels(data: np.ndarray, channels: int) -> np.ndarray:
    """Map (frames, n) to (frames, channels): mono is copied, more is mixed down or cut."""
    n = data.shape[1]
    if n == channels:
        return data
    if n == 1:
        return np.repeat(data, channels, axis=1)
    if channels == 1:
        return data.mean(axis=1, keepdims=True)
    if n > channels:
        return data[:, :channels]
    # Fewer channels than the output: fill the extra ones from the existing ones in turn.
    return data[:, [i % n for i in range(channels)]]


def resample_loop(data: np.ndarray, sr: int, rate: int) -> np.ndarray:
    """Resample a loop as a loop: the filter sees the wrapped neighbours at both ends."""
    import soxr

    frames = data.shape[0]
    pad = min(frames, max(64, sr // 20))
    # A loop shorter than the padding is repeated to provide it.
    ring = np.tile(data, (-(-pad // frames), 1))
    padded = np.concatenate([ring[-pad:], data, ring[:pad]])
    out = soxr.resample(padded, sr, rate, quality="HQ")
    start = round(pad * rate / sr)
    length = max(1, round(frames * rate / sr))
    return out[start : start + length]
