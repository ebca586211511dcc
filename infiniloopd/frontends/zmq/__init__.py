"""The ZeroMQ control socket: the first frontend, and `infiniloopctl`'s command table.

`commands` is import-light (the client loads it); `server` and `frontend` need pyzmq
and the core.
"""
