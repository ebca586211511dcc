"""infiniloopctl: control a running infiniloopd (the `mpc` to its `mpd`).

Imports only `infiniloopd.protocol` and pyzmq, so a command returns in well under 150 ms.
"""
