"""Output backends (pulse, alsa, file, null) behind one small interface.

`make_output(cfg)` builds the configured backend; `auto` picks PulseAudio if a
server answers, else ALSA `default` if it opens, else `null` with one warning
line saying how to get sound, so the daemon always starts and stays controllable.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from infiniloopd.errors import UserError
from infiniloopd.outputs.base import Output, OutputError

log = logging.getLogger(__name__)

__all__ = ["Output", "OutputError", "make_output", "resolve_auto"]

NO_SOUND_HINT = (
    "no sound server or ALSA device found; playing to null (silent). To get sound, start "
    "PulseAudio or PipeWire in your session (e.g. systemctl --user start pulseaudio), or "
    "set output.backend: alsa with output.device: <a PCM from aplay -L>"
)


def make_output(cfg) -> Output:  # cfg: infiniloopd.config.OutputConfig
    """Build the output `cfg.backend` names; resolves "auto". Raises UserError."""
    backend = cfg.backend
    if backend == "pulse":
        from infiniloopd.outputs.pulse import PulseOutput

        return PulseOutput(cfg.sink, latency_ms=cfg.latency_ms)
    if backend == "alsa":
        from infiniloopd.outputs.alsa import AlsaOutput

        return AlsaOutput(cfg.device, latency_ms=cfg.latency_ms)
    if backend == "file":
        from infiniloopd.outputs.file import FileOutput

        if cfg.path is None:
            raise UserError("output.path: expected a WAV file path for output.backend file")
        return FileOutput(cfg.path, fmt=cfg.format, realtime=cfg.realtime)
    if backend == "null":
        from infiniloopd.outputs.null import NullOutput

        return NullOutput()
    if backend == "auto":
        return resolve_auto(cfg)
    raise UserError(
        f"output.backend: expected one of auto, pulse, alsa, file, null, got {backend!r}"
    )


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
