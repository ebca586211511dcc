"""The ALSA output, through pyalsaaudio, as interleaved 16-bit samples.

16-bit is the one format every ALSA device and plugin accepts; `default` and
`plug:` devices convert rate and channels as needed. Underruns (xruns) are
recovered by pyalsaaudio itself; a device left in a bad state is reopened once
and counted as an xrun; a busy or missing device is
reported in one line that says what to do.
"""

from __future__ import annotations

import logging

import numpy as np

from infiniloopd.outputs.base import OutputError
from infiniloopd.outputs.pacing import Pacer
from infiniloopd.outputs.pcm import S16Converter

log = logging.getLogger(__name__)


def _describe_error(device: str, exc: Exception) -> str:
    text = str(exc)
    low = text.lower()
    if "busy" in low:
        return (
            f"alsa: device {device!r} is busy: another program is using it "
            "(use output.device: default to share it, or stop the other program)"
        )
    if (
        "no such file" in low
        or "no such device" in low
        or "unknown pcm" in low
        or ("invalid argument" in low and ":" not in device)
    ):
        return f"alsa: no such PCM device {device!r} (list them with: aplay -L)"
    return f"alsa: device {device!r}: {text}"


class AlsaOutput:
    """A playback PCM on `device` (an ALSA PCM name such as default, hw:0, plughw:1,0)."""

    name = "alsa"

    def __init__(self, device: str = "default", *, latency_ms: float = 200.0) -> None:
        self.device = device
        self.latency_ms = latency_ms
        self.buffer_seconds = latency_ms / 1000.0  # what the device holds after a write
        self.paced = True
        self.xruns = 0
        self._pcm = None
        self._conv: S16Converter | None = None
        self._channels = 0
        self._rate = 0
        self._pacer: Pacer | None = None

    def open(self, rate: int, channels: int) -> None:
        self.close()
        # Imported here so callers can set the ALSA environment (ALSA_CONFIG_PATH,
        # HOME for ~/.asoundrc) before the library reads its configuration.
        import alsaaudio

        periods = 4
        period = max(64, int(rate * self.latency_ms / 1000.0 / periods))
        try:
            pcm = alsaaudio.PCM(
                type=alsaaudio.PCM_PLAYBACK,
                mode=alsaaudio.PCM_NORMAL,
                device=self.device,
                rate=rate,
                channels=channels,
                format=alsaaudio.PCM_FORMAT_S16_LE,
                periodsize=period,
                periods=periods,
            )
        except alsaaudio.ALSAAudioError as exc:
            raise OutputError(_describe_error(self.device, exc)) from None
        self._pcm = pcm
        self._rate = rate
        self._channels = channels
        self._conv = S16Converter(channels)
        # A real device blocks once its buffer is full, so this pacer, allowed a lead
        # larger than that buffer, never sleeps there; it only holds back PCMs that
        # do not pace themselves (ALSA's null and file plugins).
        self._pacer = Pacer(rate, lead=self.latency_ms / 1000.0 + 0.1)

    def write(self, frames: np.ndarray) -> None:
        if self._pcm is None or self._conv is None:
            raise OutputError("alsa: device is not open")
        import alsaaudio

        data = self._conv.convert(frames)
        view = memoryview(data).cast("B")
        frame_bytes = 2 * self._channels
        recoveries = 0
        while view:
            try:
                written = self._pcm.write(view)
            except alsaaudio.ALSAAudioError as exc:
                # pyalsaaudio recovers plain underruns itself; what reaches us is a device
                # left in a bad state (xrun it could not recover, suspend). Reopen it once.
                recoveries += 1
                self.xruns += 1
                if recoveries > 1 or not self._reopen():
                    self.close()
                    raise OutputError(_describe_error(self.device, exc)) from None
                continue
            if written <= 0:  # 0 or -EPIPE on some pyalsaaudio versions: treat as an xrun
                recoveries += 1
                self.xruns += 1
                if recoveries > 1 or not self._reopen():
                    self.close()
                    raise OutputError(f"alsa: device {self.device!r}: repeated underruns")
                continue
            view = view[written * frame_bytes :]
        if self._pacer is not None:
            self._pacer.wait(int(frames.shape[0]))

    def _reopen(self) -> bool:
        rate, channels = self._rate, self._channels
        try:
            self.open(rate, channels)
        except OutputError as exc:
            log.debug("alsa: reopening after an xrun failed: %s", exc)
            return False
        return True

    def close(self) -> None:
        if self._pcm is not None:
            pcm, self._pcm = self._pcm, None
            try:
                pcm.close()
            except Exception as exc:  # closing a broken device must not raise
                log.debug("alsa: close failed: %s", exc)

    def describe(self) -> str:
        return f"alsa: device {self.device}"
