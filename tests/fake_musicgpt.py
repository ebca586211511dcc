#!/usr/bin/env python3
"""A stand-in for the MusicGPT binary with the same command-line contract.

Arguments, validation messages and exit codes follow the real program (clap usage
errors: exit 2 on stderr; its own validation: an ERROR log line and exit 1), `.wav`
is appended to an output name without it, the result is a 32 kHz mono float32 WAV
of real musical content (chords, bass and a beat), progress bars are drawn on
stderr only when it is a terminal, and the first use of a model "downloads" it into
$XDG_DATA_HOME/musicgpt.

Environment knobs (for tests and benchmarks):
  FAKE_MUSICGPT_SPEED     wall seconds per second of audio (default 0.02)
  FAKE_MUSICGPT_DOWNLOAD  seconds the simulated first download takes (default 0.5)
  FAKE_MUSICGPT_FAIL      crash | hang | garbage | empty | silent | nan | short | noprogress
  FAKE_MUSICGPT_LOG       a file to which each run appends one JSON line: its argv, pid,
                          niceness and scheduling policy
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

MODELS = ["small", "small-fp16", "small-quant", "medium", "medium-fp16", "medium-quant", "large"]
FLAGS = {"--use-split-decoder", "--force-download", "--gpu", "--no-playback", "--no-interactive"}
VALUED = {"--model", "--secs", "--output", "--ui-port"}
RATE = 32000
SPINNER = "⠁⠂⠄⡀⢀⠠⠐⠈"


def usage_error(message: str) -> int:
    sys.stderr.write(f"error: {message}\n\nFor more information, try '--help'.\n")
    return 2


def log_line(level: str, message: str) -> None:
    # The real binary logs through tracing's fmt subscriber, which writes to stdout.
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    sys.stdout.write(f"{now} {level:>5} {message}\n")
    sys.stdout.flush()


def parse(argv: list[str]) -> dict | int:
    opts: dict = {"model": "small", "secs": "10", "output": "musicgpt-generated.wav"}
    opts["flags"] = set()
    positional: list[str] = []
    i = 0
    only_positional = False
    while i < len(argv):
        arg = argv[i]
        if only_positional or not arg.startswith("--") or arg == "-":
            positional.append(arg)
        elif arg == "--":
            only_positional = True
        elif arg in ("--help", "--version"):
            print("MusicGPT 0.3.28 (stand-in)")
            raise SystemExit(0)
        else:
            name, eq, value = arg.partition("=")
            if name in FLAGS:
                opts["flags"].add(name)
            elif name in VALUED:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        return usage_error(
                            f"a value is required for '{name} <{name[2:].upper()}>' "
                            "but none was supplied"
                        )
                    value = argv[i]
                opts[name[2:].replace("-", "_")] = value
            else:
                return usage_error(f"unexpected argument '{arg}' found")
        i += 1
    if len(positional) > 1:
        return usage_error(f"unexpected argument '{positional[1]}' found")
    opts["prompt"] = positional[0] if positional else ""
    if opts["model"] not in MODELS:
        return usage_error(
            f"invalid value '{opts['model']}' for '--model <MODEL>'\n"
            f"  [possible values: {', '.join(MODELS)}]"
        )
    if not opts["secs"].isdigit():
        return usage_error(
            f"invalid value '{opts['secs']}' for '--secs <SECS>': invalid digit found in string"
        )
    opts["secs"] = int(opts["secs"])
    return opts


def draw(line: str) -> None:
    sys.stderr.write("\r\x1b[2K" + line)
    sys.stderr.flush()


def bar(fraction: float, width: int = 40) -> str:
    done = int(fraction * width)
    if done >= width:
        return "#" * width
    return "#" * done + ">" + "-" * (width - done - 1)


def download(model: str, force: bool, tty: bool, seconds: float) -> None:
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share") / "musicgpt"
    marker = data / "v1" / model / "decoder_model_merged.onnx"
    if marker.exists() and not force:
        return
    log_line("INFO", "Some AI models need to be downloaded, this only needs to be done once")
    files = [
        (f"v1/{model}/config.json", 0.01),
        (f"v1/{model}/text_encoder.onnx", 209.0),
        (f"v1/{model}/decoder_model_merged.onnx", 1700.0),
    ]
    steps = max(1, int(seconds / 0.05))
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)
        if tty:
            lines = []
            for name, size in files:
                frac = step / steps
                lines.append(
                    f"{name[-32:]:>32} {SPINNER[step % 8]} [{bar(frac)}] "
                    f"{size * frac:.2f} MiB/{size:.2f} MiB"
                )
            # indicatif's MultiProgress redraws its lines in place.
            sys.stderr.write("\r\x1b[2K" + "\n\x1b[2K".join(lines) + f"\x1b[{len(lines) - 1}A")
            sys.stderr.flush()
    if tty:
        sys.stderr.write("\r\x1b[J")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_bytes(b"fake model")
    log_line("INFO", "AI models downloaded correctly")


def music(prompt: str, secs: int, rng):  # -> np.ndarray
    import numpy as np

    digest = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
    bpm = 84 + digest % 40
    beat = 60.0 / bpm
    root = 45 + (digest >> 8) % 12  # A2 .. G#3
    n = secs * RATE
    t = np.arange(n) / RATE
    out = np.zeros(n)
    progression = [(0, 4, 7), (7, 11, 14), (9, 12, 16), (5, 9, 12)]  # I V vi IV
    bar_len = 4 * beat
    for b in range(int(secs / bar_len) + 2):
        chord = progression[b % 4]
        s0 = int(b * bar_len * RATE)
        s1 = min(n, int((b + 1) * bar_len * RATE))
        if s0 >= n:
            break
        tt = t[s0:s1] - t[s0]
        env = np.minimum(1.0, tt / 0.08) * np.exp(-tt / (bar_len * 1.2))
        for iv in chord:
            f = 440.0 * 2 ** ((root + 12 + iv - 69) / 12)
            detune = 1 + rng.uniform(-0.002, 0.002)
            out[s0:s1] += (
                0.08
                * env
                * (np.sin(2 * np.pi * f * detune * tt) + 0.3 * np.sin(4 * np.pi * f * tt))
            )
        fb = 440.0 * 2 ** ((root + chord[0] - 69) / 12)
        out[s0:s1] += 0.15 * np.exp(-tt / beat) * np.sin(2 * np.pi * fb * tt)
    # Kick on every beat, hat on the off-beats.
    kick_len = int(0.25 * RATE)
    kt = np.arange(kick_len) / RATE
    kick = np.sin(2 * np.pi * (50 * kt + 60 * (1 - np.exp(-kt * 30)) / 30)) * np.exp(-kt * 14)
    hat = rng.standard_normal(int(0.04 * RATE)) * np.exp(-np.arange(int(0.04 * RATE)) / 200)
    k = 0
    while k * beat < secs:
        s = int(k * beat * RATE)
        e = min(n, s + kick_len)
        out[s:e] += 0.5 * kick[: e - s]
        h = int((k + 0.5) * beat * RATE)
        he = min(n, h + hat.size)
        if h < n:
            out[h:he] += 0.05 * hat[: he - h]
        k += 1
    out += 0.002 * rng.standard_normal(n)
    return (out / max(1e-9, np.abs(out).max()) * 0.7).astype(np.float32)


def main(argv: list[str]) -> int:
    if log := os.environ.get("FAKE_MUSICGPT_LOG"):
        with open(log, "a") as fh:
            record = {
                "argv": argv,
                "pid": os.getpid(),
                "nice": os.getpriority(os.PRIO_PROCESS, 0),
                "sched": os.sched_getscheduler(0),
            }
            fh.write(json.dumps(record) + "\n")
    opts = parse(argv)
    if isinstance(opts, int):
        return opts
    secs = opts["secs"]
    if secs < 1:
        log_line("ERROR", "--secs must > 0")
        return 1
    if secs > 30:
        log_line("ERROR", "--secs must <= 30")
        return 1
    if not opts["prompt"]:
        if "--no-interactive" in opts["flags"]:
            log_line("ERROR", "A prompt must be provided when not in interactive mode")
            return 1
        log_line("ERROR", "the stand-in has no interactive or UI mode")
        return 1
    fail = os.environ.get("FAKE_MUSICGPT_FAIL", "")
    tty = os.isatty(2) and fail != "noprogress"
    speed = float(os.environ.get("FAKE_MUSICGPT_SPEED", "0.02"))
    download(
        opts["model"],
        "--force-download" in opts["flags"],
        tty,
        float(os.environ.get("FAKE_MUSICGPT_DOWNLOAD", "0.5")),
    )

    import numpy as np

    rng = np.random.default_rng()
    total = secs * 50  # tokens: 50 per second of audio
    wall = secs * speed
    start = time.monotonic()
    step = max(1, total // 100)
    for token in range(0, total + 1, step):
        target = start + wall * token / total
        time.sleep(max(0.0, target - time.monotonic()))
        if tty:
            el = time.monotonic() - start
            eta = wall - el
            draw(
                f"Generating audio {SPINNER[token % 8]} [00:00:{int(el):02d}] "
                f"[{bar(token / total)}] ({max(eta, 0):.1f}s)"
            )
        if fail == "crash" and token >= total // 2:
            sys.stderr.write(
                "\nthread 'main' panicked at src/musicgen/music_gen_decoder.rs:214:41:\n"
                'called `Result::unwrap()` on an `Err` value: Ort("Non-zero status code")\n'
                "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n"
            )
            return 101
        if fail == "hang" and token >= total // 4:
            while True:
                time.sleep(3600)
    if tty:
        draw(f"Generating audio ⠁ [00:00:{int(wall):02d}] [{bar(1.0)}] (0.0s)")
        sys.stderr.write("\n")
    output = opts["output"]
    if not output.endswith(".wav"):
        output += ".wav"
    if fail == "garbage":
        Path(output).write_bytes(b"RIFF\x00\x00garbage, not a wave file" * 10)
        return 0
    if fail == "empty":
        Path(output).write_bytes(b"")
        return 0
    audio = music(opts["prompt"], 1 if fail == "short" else secs, rng)
    if fail == "silent":
        audio[:] = 0.0
    if fail == "nan":
        audio[1000:1100] = np.nan
    import soundfile as sf

    sf.write(output, audio, RATE, subtype="FLOAT", format="WAV")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
