"""Where the synth finds its SoundFont; import-light, for the daemon process."""

from pathlib import Path

SR = 32000  # what MusicGen writes, so the pipeline cannot tell the two apart
SF2_DIR = Path("/usr/share/sounds/sf2")
# Debian's packages: fluid-soundfont-gm (the good one), timgm6mb-soundfont (the small
# one), and the default-GM.sf2 alternative that either of them (or the admin) provides.
DEFAULT_SOUNDFONTS: tuple[Path, ...] = (
    SF2_DIR / "FluidR3_GM.sf2",
    SF2_DIR / "TimGM6mb.sf2",
    SF2_DIR / "default-GM.sf2",
)
INSTALL_HINT = "apt-get install fluid-soundfont-gm"
