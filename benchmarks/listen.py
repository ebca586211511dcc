#!/usr/bin/env python3
"""What a listener hears: records prompts with `infiniloopd record` and measures the audio.

    python3 benchmarks/listen.py [--minutes 10] [--prompts P ...] [--before] [--seed 1]
                                 [--keep DIR] [--json OUT.json]

Each prompt is recorded for `--minutes` with the synth and the default playback
settings (a private config and XDG dirs; a kept library so the loops can be found
again). `--before` records with `playback.align: false` and `playback.variation:
loop`: the old playback (crossfade at once from the next loop's first sample, no
tempo matching, each loop repeated exactly), through the same producer and mixer.
Figures, per prompt and overall, all from the audio; the timeline only says where
to look:

  exact min   minutes of the record that are one exact loop: in some 40 s window of
              the minute (starting at 0, 10 or 20 s) the log-mel feature
              autocorrelation reaches >= 0.97 at some period between 1.5 s and 20 s
  bars med    median loop length in bars (each distinct loop once; from its grid)
  1-bar       loops of at most 1.25 bars
  xf off med/p90  beat offset between the two loops during each crossfade, in ms:
              each loop's beats found by librosa's beat tracker on the loop's own
              audio, placed in the record where cross-correlation finds the loop
              (outgoing: the second before the transition; incoming: the second
              after the fade); per crossfade the median distance from each incoming
              beat in the overlap to the nearest outgoing beat; median and p90 over
              crossfades
  db hits     crossfades whose incoming downbeat lands within 35 ms of an outgoing
              downbeat; a loop's downbeats are its tracked beats nearest to its grid's
              bar lines, placed in the record by that same correlation
  nobt        crossfades left out of the two figures above: in one of the loops the
              tracker hears no steady beat at (a multiple of) its grid tempo (pads)
              (where the tracker hears a steady beat but half a beat away from the
              grid's, on the off-beat, the grid's beats are used instead: the JSON
              counts those crossfades as off_phase)
  dipx        the worst jump dip minus the music's own dip at that place: the deeper
              of the source loop played on without the jump and the target loop
              played into its beat (how much lower the splice goes than the music
              itself there; > -3 dB: no audible dip of its own)
  jumps       variation jumps; click p90, worst dip (dB), beat-interval excess p90
              and median continuation surprise at the jumps (seam_eval.py's
              metrics on the record from 8 s before to 16 s after each, at most
              --eval-jumps of them per prompt); "seam surpr" is the same surprise
              at a wrap of each loop played plainly: the yardstick
  speed       seconds of audio rendered per second of wall time
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# seam_eval's beat tracker is librosa's (numba): a private JIT cache, since a shared one
# written by several processes at once has crashed it.
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "infiniloop-numba"))

PROMPTS = [
    "upbeat funk groove with drums and bass",
    "calm ambient pads, slow and dreamy",
    "lofi hip hop beat, relaxed piano",
    "driving techno with a steady kick",
]
EXACT = 0.97
DOWNBEAT_TOL = 0.035


def seam_eval():
    path = os.environ.get("SEAM_EVAL") or str(ROOT.parent / "shared" / "tools" / "seam_eval.py")
    if not Path(path).exists():
        path = "/work/shared/tools/seam_eval.py"
    spec = importlib.util.spec_from_file_location("seam_eval", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --- recording ------------------------------------------------------------------------


def load(work: Path) -> dict:
    """A record kept by an earlier run (--keep), to measure again (--measure)."""
    audio, rate = sf.read(work / "rec.flac", dtype="float32", always_2d=True)
    tl = json.loads((work / "rec.json").read_text())
    return {"audio": audio, "rate": rate, "timeline": tl, "lib": work / "lib", "wall": 0.0}


def record(prompt: str, minutes: float, seed: int, before: bool, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "config.yaml"
    if before:
        cfg.write_text("playback:\n  align: false\n  variation: loop\n")
    else:
        cfg.write_text("playback:\n  align: true\n  variation: branch\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        env[name] = str(work / name.lower())
    out, timeline, lib = work / "rec.flac", work / "rec.json", work / "lib"
    argv = [sys.executable, "-m", "infiniloopd", "record", str(out), "--minutes", str(minutes)]
    argv += ["--prompt", prompt, "--seed", str(seed), "--timeline", str(timeline)]
    argv += ["--library", str(lib), "--config", str(cfg)]
    started = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"listen.py: record failed for {prompt!r}:\n{proc.stderr[-3000:]}")
    audio, rate = sf.read(out, dtype="float32", always_2d=True)
    tl = json.loads(timeline.read_text())
    return {
        "audio": audio,
        "rate": rate,
        "timeline": tl,
        "lib": lib,
        "wall": time.monotonic() - started,
    }


# --- figures ----------------------------------------------------------------------------


def periodicity(x: np.ndarray, sr: int, lo: float = 1.5, hi: float = 30.0) -> tuple[float, float]:
    """Best normalized log-mel autocorrelation over lags lo..hi seconds, and its lag."""
    import librosa

    hop = 512
    mel = librosa.feature.melspectrogram(y=x, sr=sr, n_fft=2048, hop_length=hop, n_mels=64)
    f = librosa.power_to_db(mel, ref=np.max, top_db=80.0)
    f = f - f.mean(axis=1, keepdims=True)
    t = f.shape[1]
    fps = sr / hop
    nfft = 1 << (2 * t - 1).bit_length()
    spec = np.fft.rfft(f, nfft, axis=1)
    ac = np.fft.irfft(spec * np.conj(spec), nfft, axis=1)[:, :t].sum(axis=0)
    c = np.concatenate([[0.0], np.cumsum((f**2).sum(axis=0))])
    lags = np.arange(max(1, round(lo * fps)), min(t - 1, round(hi * fps)))
    den = np.sqrt(c[t - lags] * (c[t] - c[lags]))
    r = ac[lags] / np.maximum(den, 1e-12)
    i = int(np.argmax(r))
    return float(r[i]), float(lags[i] / fps)


def exact_minutes(mono: np.ndarray, sr: int) -> tuple[int, int]:
    """Minutes that are one exact loop: some 40 s window of the minute (at 0, 10 or 20 s)
    repeats itself with a period of 1.5-20 s (a crossfade to the next loop, once a
    minute, spoils one window, not all three)."""
    n = mono.size // (60 * sr)
    hits = 0
    for m in range(n):
        windows = [mono[(60 * m + o) * sr : (60 * m + o + 40) * sr] for o in (0, 10, 20)]
        hits += max(periodicity(w, sr, hi=20.0)[0] for w in windows) >= EXACT
    return int(hits), int(n)


def loop_bars(events: list[dict], sr: int) -> list[float]:
    bars = {}
    for e in events:
        if e["type"] != "loop":
            continue
        grid = e.get("grid") or {}
        bpm, per_bar = grid.get("bpm") or e.get("bpm"), grid.get("beats_per_bar") or 4
        if bpm:
            bars[e["id"]] = e["frames"] / (per_bar * 60.0 / bpm * sr)
    return list(bars.values())


def loop_audio(lib: Path, loop: dict, sr: int) -> np.ndarray:
    """The loop as it was played (re-stretched the same way if it was stretched)."""
    path = lib / f"{loop['id']}.flac"
    if not path.exists():
        path = next(lib.rglob(f"{loop['id']}.*flac"))
    audio, _ = sf.read(path, dtype="float32", always_2d=True)
    if loop.get("frames") and loop["frames"] != audio.shape[0]:
        from infiniloopd.player.stretch import stretch_loop

        audio = stretch_loop(audio, sr, loop["frames"] / audio.shape[0])
    return audio.mean(axis=1)


def phase_at(rec: np.ndarray, start: int, loop: np.ndarray, sr: int, length: int = 0) -> int:
    """The frame of `loop` that plays at record sample `start` (cross-correlation over
    `length` samples, default a second)."""
    seg = rec[start : start + (length or sr)]
    n = loop.size
    tiled = np.tile(loop, 2 + seg.size // n)[: n + seg.size].astype(np.float64)
    corr = signal.correlate(tiled, seg, mode="valid", method="fft")[:n]
    # normalized: a raw dot product favours the loop's loudest stretch over the match
    c2 = np.concatenate([[0.0], np.cumsum(tiled * tiled)])
    energy = c2[seg.size : seg.size + n] - c2[:n]
    return int(np.argmax(corr / np.sqrt(np.maximum(energy, 1e-20))))


_beat_cache: dict[str, np.ndarray] = {}


def loop_beats(key: str, loop: np.ndarray, sr: int) -> np.ndarray:
    """Beat positions of a loop (frames within it), tracked on three copies of its audio.

    Ellis's dynamic-programming tracker on a spectral-flux onset envelope (8 ms hops),
    the numpy one in infiniloopd.analysis (librosa's numba tracker crashes in some
    environments)."""
    import soxr

    from infiniloopd.analysis.beats import estimate_period, track_beats
    from infiniloopd.analysis.features import ANALYSIS_RATE, HOP, frame_features

    key = f"{key}:{loop.size}"
    if key not in _beat_cache:
        n = loop.size
        x = soxr.resample(np.tile(loop, 3).astype(np.float32), sr, ANALYSIS_RATE)
        onset = frame_features(x).onset
        hop_s = HOP / ANALYSIS_RATE
        frames = track_beats(onset, estimate_period(onset, hop_s))
        beats = np.round(frames * hop_s * sr).astype(np.int64)
        _beat_cache[key] = np.unique(beats[(beats >= n) & (beats < 2 * n)] - n)
    return _beat_cache[key]


def placed(points: np.ndarray, origin: int, n: int, lo: int, hi: int) -> np.ndarray:
    """Loop positions `points` as record samples in [lo, hi), the loop's frame 0 at `origin`."""
    if points.size == 0:
        return points
    ks = np.arange((lo - origin) // n - 1, (hi - origin) // n + 2)
    allp = (origin + points[None, :] + ks[:, None] * n).ravel()
    return np.sort(allp[(allp >= lo) & (allp < hi)])


def grid_beats(loop: dict) -> np.ndarray:
    return np.asarray((loop.get("grid") or {}).get("beats") or [], dtype=np.int64)


def heard_beats(loop: dict, audio: np.ndarray, sr: int) -> tuple[np.ndarray, bool]:
    """The loop's beats as the tracker hears them, and whether they are in phase with
    its grid. A tracker that locks onto the off-beat (an open hat, an off-beat bass)
    is half a beat out everywhere; then the grid's beats stand in (False), as they do
    when fewer than 3 in 4 tracked beats lie within an eighth of a beat of a grid beat.
    Tracked beats further than that from any grid beat are left out."""
    beats = loop_beats(loop["id"], audio, sr)
    grid = np.asarray((loop.get("grid") or {}).get("beats") or [], dtype=np.int64)
    if beats.size == 0 or grid.size < 2:
        return beats, True
    n = audio.size
    period = float(np.median(np.diff(grid)))
    if beats.size >= 2 and abs(float(np.median(np.diff(beats))) / period - 2.0) <= 0.12:
        # heard at half the tempo: the beat between two tracked ones is its midpoint
        mids = (beats[:-1] + beats[1:]) // 2
        wrap = (beats[-1] + beats[0] + n) // 2 % n
        beats = np.unique(np.concatenate([beats, mids, [wrap]]))
    ring = np.concatenate([grid - n, grid, grid + n])
    off = np.array([b - ring[np.argmin(np.abs(ring - b))] for b in beats])
    if abs(float(np.median(off))) <= period / 8:
        # the beats the tracker and the grid agree on (a tracker's stray beat is no
        # evidence of where the loop's beat is)
        agreed = beats[np.abs(off) <= period / 8]
        if agreed.size >= 0.75 * beats.size:
            return agreed, True
    return grid, False


def snap(loop: dict, beats: np.ndarray, n: int) -> np.ndarray:
    """The loop's downbeats as heard: each grid bar line moved to the nearest tracked beat
    (within an eighth of a beat)."""
    grid = np.asarray((loop.get("grid") or {}).get("downbeats") or [0], dtype=np.int64)
    if beats.size == 0:
        return grid
    ring = np.concatenate([beats - n, beats, beats + n])
    # a beat the tracker missed leaves its bar line where the grid has it
    tol = float(np.median(np.diff(np.sort(beats)))) / 8 if beats.size > 1 else 0.0
    near = [ring[np.argmin(np.abs(ring - g))] for g in grid]
    snapped = [x if abs(x - g) <= tol else g for x, g in zip(near, grid, strict=True)]
    return np.array(snapped, np.int64) % n


def deck_jumps(rec: dict, deck: dict) -> list[dict]:
    """The variation jumps of the deck that started as `deck` (a loop event)."""
    return [
        e
        for e in rec["timeline"]["events"]
        if e["type"] == "jump" and e.get("id") == deck["id"] and e["at"] >= deck["at"]
    ]


def sounding(rec: dict, deck: dict, t: int) -> dict:
    """What the deck that started as `deck` (a loop event) plays at sample t: its own
    loop, or the pool loop its last variation jump before t went to."""
    last = None
    for e in deck_jumps(rec, deck):
        if e["at"] < t:
            last = e
    if last is None or last["to"]["loop"] == deck["id"]:
        return deck
    # A pool loop plays as the library holds it (its own tempo and grid).
    return library_loop(rec, last["to"]["loop"])


def library_loop(rec: dict, key: str) -> dict:
    """A loop as the record's library holds it: its sidecar (grid and all), unstretched."""
    sidecar = next(rec["lib"].rglob(f"{key}.json"), None)
    loop = json.loads(sidecar.read_text()) if sidecar is not None else {}
    return {**loop, "id": key, "frames": None}


def circular_window(audio: np.ndarray, pos: int, n: int) -> np.ndarray:
    """The loop played on from n frames before `pos` to 2n after it (wrapping)."""
    return np.take(audio, np.arange(pos - n, pos + 2 * n), mode="wrap")


def audible_beat(beats: np.ndarray, loop: dict, n: int, sr: int) -> bool:
    """Does the tracker hear a steady beat in the loop at (a multiple of) its grid tempo?
    Pads and drones give it arbitrary onsets: no beat to measure an offset against."""
    if beats.size < 4:
        return False
    ibi = np.diff(beats)
    if np.std(ibi) > 0.15 * np.mean(ibi):
        return False
    bpm = (loop.get("grid") or {}).get("bpm") or loop.get("bpm")
    if not bpm:
        return True
    ratio = float(np.median(ibi)) / (60.0 * sr / bpm)
    return any(abs(ratio / m - 1.0) <= 0.06 for m in (0.5, 1.0, 2.0))


def crossfades(rec: dict) -> list[dict]:
    sr, tl, lib = rec["rate"], rec["timeline"], rec["lib"]
    mono = rec["audio"].mean(axis=1)
    events = tl["events"]
    loops = [e for e in events if e["type"] == "loop"]
    out = []
    for s in (e for e in events if e["type"] == "transition_start"):
        t, fade = s["at"], s["fade"]
        if t < sr or t + fade + sr > mono.size:
            continue
        olds = [e for e in loops if e["id"] == s.get("from") and e["at"] < t]
        news = [e for e in loops if e["id"] == s["id"] and e["at"] == t]
        if not olds or not news:
            continue
        old, new = sounding(rec, olds[-1], t), sounding(rec, news[0], t + fade)
        a_old, a_new = loop_audio(lib, old, sr), loop_audio(lib, new, sr)
        n_old, n_new = a_old.size, a_new.size
        # Where each loop's frame 0 lies in the record, from the audio: the outgoing
        # loop in the second before the transition, the incoming one in the second after
        # the fade, each measured only where its deck made no variation jump.
        after = [  # the end of each jump's crossfade, and then some
            e["at"] + e.get("fade", round(JUMP_FADE * sr)) + sr // 50
            for e in deck_jumps(rec, olds[-1])
            if e["at"] < t
        ]
        start = max([t - sr, *after])
        end = min(
            [t + fade + sr] + [e["at"] for e in deck_jumps(rec, news[0]) if e["at"] > t + fade]
        )
        if t - start < sr // 4 or end - (t + fade) < sr // 4:
            continue  # too short to place a loop by correlation
        p_old = phase_at(mono, start, a_old, sr, t - start)
        origin_old = start - p_old
        p_new = phase_at(mono, t + fade, a_new, sr, end - t - fade)
        origin_new = t + fade - p_new
        lo, hi = t, t + max(fade, 1)
        heard = [
            audible_beat(loop_beats(x["id"], a, sr), x, a.size, sr)
            for x, a in ((old, a_old), (new, a_new))
        ]
        if not all(heard):
            out.append({"at": t, "beatless": True})
            continue
        (t_old, ok_old), (t_new, ok_new) = heard_beats(old, a_old, sr), heard_beats(new, a_new, sr)
        if not (ok_old and ok_new):  # one side on the grid: both on the grid, alike
            t_old, t_new = grid_beats(old), grid_beats(new)
        b_old = placed(t_old, origin_old, n_old, lo - sr, hi + sr)
        b_new = placed(t_new, origin_new, n_new, lo, hi)
        item = {"at": t, "off_phase": not (ok_old and ok_new)}
        if b_old.size and b_new.size:
            d = np.abs(b_new[:, None] - b_old[None, :]).min(axis=1)
            item["offset_ms"] = float(np.median(d) / sr * 1000)
        # Downbeats: the tracked beats (audio) nearest to the grid's bar lines.
        db_old = snap(old, t_old, n_old)
        db_new = snap(new, t_new, n_new)
        first_new = placed(db_new[:1], origin_new, n_new, lo - sr // 2, hi)
        bars_old = placed(db_old, origin_old, n_old, lo - 2 * sr, hi + 2 * sr)
        if first_new.size and bars_old.size:
            gap = np.abs(first_new[0] - bars_old).min() / sr
            item["downbeat_hit"] = bool(gap <= DOWNBEAT_TOL)
        out.append(item)
    return out


def seam_figures(se, x: np.ndarray, sr: int, n: int) -> dict:
    """seam_eval's metrics for a join at sample n of x (x spans n before to 2n after)."""
    item = {"click": se.click_score(x[: n - sr // 10], x, (n,))}
    item.update(se.level_dip(x, sr, n, (n,)))
    jump, _, floor = se.ibi_jump(x.astype(np.float32), sr, (n,), n)
    item["ibi_excess"] = None if jump is None or floor is None else jump - floor
    item["surprise"] = se.continuation_surprise(x, sr, n, (n,))
    return item


def jumps(rec: dict, se, limit: int) -> list[dict]:
    sr, mono = rec["rate"], rec["audio"].mean(axis=1).astype(np.float64)
    n = 8 * sr
    evs = [
        e
        for e in rec["timeline"]["events"]
        if e["type"] == "jump" and e["at"] >= n and e["at"] + 3 * n <= mono.size
    ]
    if len(evs) > limit:  # evenly spread over the record
        evs = [evs[i] for i in np.linspace(0, len(evs) - 1, limit).round().astype(int)]
    out = []
    for e in evs:
        # the join is the middle of the jump's crossfade (30 ms where the event does
        # not say: records made before jump events carried their fade)
        fade = e.get("fade", round(JUMP_FADE * sr))
        at = e["at"] + fade // 2
        item = seam_figures(se, mono[at - n : at + 2 * n], sr, n)
        # the music's own dip there: the deeper of the source loop played on and the
        # target loop arriving at the same place
        sides = [plain_dip(rec, se, e[s]["loop"], e[s]["beat"], fade) for s in ("from", "to")]
        plain = min((d for d in sides if d is not None), default=None)
        if plain is not None and item.get("dip_db") is not None:
            item["dip_excess"] = item["dip_db"] - plain
        if not all(beat_heard(rec, e[side]["loop"]) for side in ("from", "to")):
            item["ibi_excess"] = None  # no beat to stumble: the tracker's figure is noise
        out.append(item)
    return out


_heard: dict[str, bool] = {}
JUMP_FADE = 0.030  # a jump's crossfade where its event does not say
JUMP_TAIL = 0.006  # a jump's crossfade ends this long before its beat


def plain_dip(rec: dict, se, key: str, beat: int, fade: int) -> float | None:
    """seam_eval's dip at the place of a jump's crossfade before `beat` of a loop
    played on without a jump: how low the music itself goes there (quiet before a beat
    is the music, not the splice)."""
    loop = library_loop(rec, key)
    beats = (loop.get("grid") or {}).get("beats") or []
    if beat >= len(beats):
        return None
    sr = rec["rate"]
    audio = loop_audio(rec["lib"], loop, sr).astype(np.float64)
    n = 8 * sr
    x = circular_window(audio, beats[beat] - round(JUMP_TAIL * sr) - fade + fade // 2, n)
    return se.level_dip(x, sr, n, (n,)).get("dip_db")


def beat_heard(rec: dict, key: str) -> bool:
    """audible_beat() for a loop of the record's library, by id."""
    if key not in _heard:
        loop = library_loop(rec, key)
        audio = loop_audio(rec["lib"], loop, rec["rate"])
        _heard[key] = audible_beat(
            loop_beats(key, audio, rec["rate"]), loop, audio.size, rec["rate"]
        )
    return _heard[key]


def loop_seams(rec: dict, se) -> list[dict]:
    """The same figures at a wrap of each loop of the record played plainly."""
    sr = rec["rate"]
    n = 8 * sr
    out, seen = [], set()
    for e in rec["timeline"]["events"]:
        if e["type"] != "loop" or e["id"] in seen:
            continue
        seen.add(e["id"])
        loop = loop_audio(rec["lib"], e, sr).astype(np.float64)
        out.append(seam_figures(se, circular_window(loop, 0, n), sr, n))
    return out


def figures(rec: dict, se, limit: int) -> dict:
    sr = rec["rate"]
    mono = rec["audio"].mean(axis=1)
    ex, minutes = exact_minutes(mono, sr)
    bars = loop_bars(rec["timeline"]["events"], sr)
    xf = crossfades(rec)
    jp = jumps(rec, se, limit)
    return {
        "exact": ex,
        "minutes": minutes,
        "bars": bars,
        "offsets": [x["offset_ms"] for x in xf if "offset_ms" in x],
        "hits": [x["downbeat_hit"] for x in xf if "downbeat_hit" in x],
        "beatless": sum(bool(x.get("beatless")) for x in xf),
        "off_phase": sum(bool(x.get("off_phase")) for x in xf),
        "jumps": jp,
        "jumps_total": sum(e["type"] == "jump" for e in rec["timeline"]["events"]),
        "seams": loop_seams(rec, se),
        "speed": rec["timeline"]["speed"],
    }


def _q(values, q):
    values = [v for v in values if v is not None]
    return float(np.percentile(values, q)) if values else float("nan")


def row(name: str, f: dict) -> str:
    bars = f["bars"]
    hits = f["hits"]
    jp = f["jumps"]
    dips = [j["dip_db"] for j in jp if j.get("dip_db") is not None]
    excess = [j["dip_excess"] for j in jp if j.get("dip_excess") is not None]
    return (
        f"{name[:38]:<38} {f['exact']:>3}/{f['minutes']:<3} {_q(bars, 50):>7.1f} "
        f"{sum(b <= 1.25 for b in bars):>3}/{len(bars):<3} "
        f"{_q(f['offsets'], 50):>6.0f} {_q(f['offsets'], 90):>6.0f} "
        f"{sum(hits):>3}/{len(hits):<3} {f['beatless']:>4} {f['jumps_total']:>5} "
        f"{_q([j['click'] for j in jp], 90):>6.2f} "
        f"{(min(dips) if dips else float('nan')):>6.1f} "
        f"{(min(excess) if excess else float('nan')):>6.1f} "
        f"{_q([j['ibi_excess'] for j in jp], 90):>6.3f} "
        f"{_q([j['surprise'] for j in jp], 50):>6.1f} "
        f"{_q([j['surprise'] for j in f['seams']], 50):>6.1f} {f['speed']:>6.1f}"
    )


HEADER = (
    f"{'prompt':<38} {'exact':>7} {'bars':>7} {'1-bar':>7} {'xf med':>6} {'xf p90':>6} "
    f"{'db hit':>7} {'nobt':>4} {'jumps':>5} {'clk90':>6} {'dipmin':>6} {'dipx':>6} "
    f"{'ibi90':>6} {'surpr':>6} {'seam':>6} {'speed':>6}"
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--prompts", nargs="+", default=PROMPTS)
    ap.add_argument(
        "--before", action="store_true", help="align: false, variation: loop (the old playback)"
    )
    ap.add_argument("--eval-jumps", type=int, default=40, help="jumps measured per prompt")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="keep the records and loops in this directory")
    ap.add_argument("--json", type=Path, help="write the figures as JSON")
    ap.add_argument(
        "--measure", action="store_true", help="measure the records kept in --keep DIR again"
    )
    args = ap.parse_args()
    se = seam_eval()
    base = args.keep or Path(tempfile.mkdtemp(prefix="infiniloop-listen-"))
    print(
        f"{'before (align: false, variation: loop)' if args.before else 'after (align, branch)'}, "
        f"{args.minutes:g} min per prompt, seed {args.seed}"
    )
    print(HEADER)
    allf = {
        "exact": 0,
        "minutes": 0,
        "bars": [],
        "offsets": [],
        "hits": [],
        "jumps": [],
        "jumps_total": 0,
        "beatless": 0,
        "off_phase": 0,
        "seams": [],
        "speed": [],
    }
    per = {}
    for i, prompt in enumerate(args.prompts):
        if args.measure:
            rec = load(base / f"p{i}")
        else:
            rec = record(prompt, args.minutes, args.seed + i, args.before, base / f"p{i}")
        f = figures(rec, se, args.eval_jumps)
        per[prompt] = f
        print(row(prompt, f), flush=True)
        for k in ("exact", "minutes", "jumps_total", "beatless", "off_phase"):
            allf[k] += f[k]
        for k in ("bars", "offsets", "hits", "jumps", "seams"):
            allf[k] += f[k]
        allf["speed"].append(f["speed"])
    allf["speed"] = float(np.median(allf["speed"]))
    print(row("overall", allf))
    if args.json:
        args.json.write_text(
            json.dumps({"per_prompt": per, "overall": allf}, indent=1, default=float)
        )
    if args.keep is None:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
