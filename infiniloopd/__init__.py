"""infiniloop daemon: endless, seamlessly looped, AI-generated music.

Kept import-light on purpose: `infiniloopctl` imports `infiniloopd.protocol`,
and must start in well under 150 ms, so nothing heavy may be imported here.
"""

__version__ = "0.1.0"
