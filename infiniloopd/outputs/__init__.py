"""Output backends (pulse, alsa, file, null, http, snapcast) behind one small interface.

`make_output(cfg)` builds the configured backend; `auto` picks PulseAudio if a
server answers, else ALSA `default` if it opens, else `null` with one warning
line saying how to get sound, so the daemon always starts and stays controllable.
`build_output(config)` builds what the whole config asks for: `output:` alone, or
every entry of `outputs:` behind one fan-out.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from infiniloopd.outputs.base import Output, OutputError
from infiniloopd.registry import REGISTRY, register

log = logging.getLogger(__name__)

__all__ = [
    "Output",
    "OutputError",
    "build_output",
    "make_output",
    "output_states",
    "resolve_auto",
    "set_output_metadata",
]

NO_SOUND_HINT = (
    "no sound server or ALSA device found; playing to null (silent). To get sound, start "
    "PulseAudio or PipeWire in your session (e.g. systemctl --user start pulseaudio), or "
    "set output.backend: alsa with output.device: <a PCM from aplay -L>"
)


def build_output(config) -> Output:  # config: infiniloopd.config.Config
    """The single `output:`, or all of `outputs:` behind a fan-out (the first one paces)."""
    entries = config.outputs
    if not entries:
        return make_output(config.output)
    if len(entries) == 1:  # one output: the direct path, no extra thread or latency
        return make_output(entries[0])
    from infiniloopd.outputs.fanout import FanoutOutput

    return FanoutOutput(
        [make_output(e, in_fanout=True) for e in entries], block_ms=config.output.block_ms
    )


def set_output_metadata(output: Output | None, title: str) -> None:
    """Tell outputs that show a title (the HTTP stream's ICY StreamTitle) what plays."""
    setter = getattr(output, "set_metadata", None)
    if setter is not None:
        try:
            setter(title)
        except Exception as exc:  # a title is cosmetic: never let it break playback
            log.debug("setting the output title failed: %s", exc)


def output_states(output: Output | None, status) -> list[dict]:  # status: PlayerStatus
    """Each output with its state and underruns, for `status -v`."""
    states = getattr(output, "states", None)
    if states is not None:
        return [dataclasses.asdict(s) for s in states()]
    return [
        {
            "name": getattr(output, "name", "output"),
            "description": status.output,
            "state": "ok" if status.output_ok else "failed",
            "underruns": status.xruns + status.stalls,
            "error": None,
        }
    ]


def make_output(cfg, *, in_fanout: bool = False) -> Output:  # cfg: config.OutputConfig
    """Build the output `cfg.backend` names; resolves "auto". Raises UserError.

    `in_fanout`: the fan-out delivers blocks in real time already, so network outputs
    must not pace themselves (they would fall behind after a catch-up burst).
    """
    return REGISTRY.build("output", cfg.backend, cfg, in_fanout=in_fanout)


# --- the output backends, registered in the order config lists them --------------------


@register("output", "auto", section="output", keys=("sink", "device", "latency_ms"))
def _auto(cfg, *, in_fanout: bool = False) -> Output:
    return resolve_auto(cfg)


@register("output", "pulse", section="output", keys=("sink", "latency_ms"))
def _pulse(cfg, *, in_fanout: bool = False) -> Output:
    from infiniloopd.outputs.pulse import PulseOutput

    return PulseOutput(cfg.sink, latency_ms=cfg.latency_ms)


@register("output", "alsa", section="output", keys=("device", "latency_ms"))
def _alsa(cfg, *, in_fanout: bool = False) -> Output:
    from infiniloopd.outputs.alsa import AlsaOutput

    return AlsaOutput(cfg.device, latency_ms=cfg.latency_ms)


@register(
    "output",
    "file",
    section="output",
    keys=("path", "format", "realtime"),
    required=(("path", "a WAV file path"),),
)
def _file(cfg, *, in_fanout: bool = False) -> Output:
    from infiniloopd.outputs.file import FileOutput

    return FileOutput(cfg.path, fmt=cfg.format, realtime=cfg.realtime)


@register("output", "null", section="output")
def _null(cfg, *, in_fanout: bool = False) -> Output:
    from infiniloopd.outputs.null import NullOutput

    return NullOutput()


@register("output", "http", section="output", keys=("listen", "formats", "password", "bitrate"))
def _http(cfg, *, in_fanout: bool = False) -> Output:
    from infiniloopd.outputs.http import HttpOutput

    return HttpOutput(
        cfg.listen, formats=tuple(cfg.formats), password=cfg.password,
        bitrate_kbps=cfg.bitrate, pace=not in_fanout,
    )  # fmt: skip


@register(
    "output",
    "snapcast",
    section="output",
    keys=("path", "sample_format"),
    required=(("path", "a snapserver pipe path or tcp://HOST:PORT"),),
)
def _snapcast(cfg, *, in_fanout: bool = False) -> Output:
    from infiniloopd.outputs.snapcast import SnapcastOutput

    target = str(cfg.path)
    if target.startswith("tcp:/") and not target.startswith("tcp://"):
        target = "tcp://" + target[len("tcp:/") :]  # Path() folded the URL's "//"
    return SnapcastOutput(target, sample_format=cfg.sample_format, pace=not in_fanout)


def _alsa_worth_trying(device: str) -> bool:
    """False when ALSA's `default` cannot lead anywhere: no card and no ALSA config.

    Opening it then only makes alsa-lib print a screenful of "cannot find card '0'"
    to stderr before failing, which buries the one line that says how to get sound.
    """
    if device != "default":
        return True
    try:
        cards = Path("/proc/asound/cards").read_text()
    except OSError:
        cards = ""
    if cards.strip() and "no soundcards" not in cards:
        return True
    configs = [Path.home() / ".asoundrc", Path("/etc/asound.conf")]
    return bool(os.environ.get("ALSA_CONFIG_PATH")) or any(p.exists() for p in configs)


def resolve_auto(cfg) -> Output:
    """PulseAudio if a server answers, else ALSA `device` if it opens, else null (one warning)."""
    from infiniloopd.outputs.pulse import PulseOutput, list_sinks

    try:
        list_sinks(timeout=1.5)
    except OutputError as exc:
        log.debug("auto: pulse unavailable: %s", exc)
    else:
        return PulseOutput(cfg.sink, latency_ms=cfg.latency_ms)

    if _alsa_worth_trying(cfg.device):
        from infiniloopd.outputs.alsa import AlsaOutput

        alsa = AlsaOutput(cfg.device, latency_ms=cfg.latency_ms)
        try:
            alsa.open(cfg.rate, cfg.channels)
        except OutputError as exc:
            log.debug("auto: alsa unavailable: %s", exc)
        except ImportError as exc:
            log.debug("auto: pyalsaaudio unavailable: %s", exc)
        else:
            alsa.close()
            return alsa

    from infiniloopd.outputs.null import NullOutput

    log.warning(NO_SOUND_HINT)
    return NullOutput(reason="no sound server or device found")
