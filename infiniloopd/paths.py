"""XDG base directories and private runtime directories.

Import-light (no third-party modules): the client uses it to find the socket.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from infiniloopd.errors import UserError

APP = "infiniloop"


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var, "")
    # The spec says relative paths in these variables are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / fallback


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / APP


def data_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / APP


def cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache") / APP


def state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state") / APP


def music_dir() -> Path:
    """Where `save` puts loops: $XDG_MUSIC_DIR/infiniloop, else ~/Music/infiniloop."""
    value = os.environ.get("XDG_MUSIC_DIR", "")
    base = Path(value) if value and os.path.isabs(value) else Path.home() / "Music"
    return base / APP


def runtime_dir() -> Path:
    """The private directory for the daemon's sockets, even under cron's bare environment.

    $XDG_RUNTIME_DIR/infiniloop, else /run/user/$UID/infiniloop when that runtime dir
    exists and is ours, else a private directory under /tmp named with the uid.
    """
    value = os.environ.get("XDG_RUNTIME_DIR", "")
    if value and os.path.isabs(value):
        return Path(value) / APP
    uid = os.getuid()
    run_user = Path(f"/run/user/{uid}")
    try:
        st = run_user.stat()
        if st.st_uid == uid and stat.S_ISDIR(st.st_mode):
            return run_user / APP
    except OSError:
        pass
    return Path(f"/tmp/{APP}-{uid}")


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) with mode 0700 and check that it is safe.

    Refuses a directory owned by someone else or writable by others, since the
    control socket inside it is the only access control the daemon has. The mode of
    a directory it did not create is never changed: that is its owner's business.
    """
    created = False
    try:
        try:
            path.mkdir(mode=0o700, parents=True)
            created = True
        except FileExistsError:
            pass
        st = path.lstat()
    except OSError as exc:
        raise UserError(f"{path}: cannot create directory: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UserError(f"{path}: expected a directory, found something else")
    if st.st_uid != os.getuid():
        raise UserError(f"{path}: owned by uid {st.st_uid}, not by you (uid {os.getuid()})")
    if created and st.st_mode & 0o077:
        os.chmod(path, 0o700)  # ours, born under a loose umask
    elif st.st_mode & 0o022:
        raise UserError(
            f"{path}: writable by others (mode {stat.S_IMODE(st.st_mode):o}); run chmod 700 {path}"
        )
    return path


def check_own_socket(path: Path) -> None:
    """Refuse to talk through a socket that another user could have put in our way.

    The client checks the default endpoint before sending anything: its directory
    (which may be a fallback under /tmp that anyone could have created first) and
    the socket must be ours and not writable by others. UserError says what is wrong.
    """
    uid = os.getuid()
    for what, target, want in (("directory", path.parent, stat.S_ISDIR), ("socket", path, None)):
        try:
            st = target.lstat()
        except FileNotFoundError:
            return  # nothing there: the caller reports "not running"
        except OSError as exc:
            raise UserError(f"{target}: cannot check the control {what}: {exc.strerror}") from None
        if want is not None and not want(st.st_mode):
            raise UserError(f"{target}: expected a directory for the control socket")
        if want is None and not stat.S_ISSOCK(st.st_mode):
            raise UserError(f"{target}: not a socket; refusing to use it")
        if st.st_uid != uid:
            raise UserError(
                f"{target}: the control {what} belongs to uid {st.st_uid}, not to you "
                f"(uid {uid}); refusing to use it"
            )
        if want is not None and st.st_mode & 0o022:
            raise UserError(
                f"{target}: the control directory is writable by others; refusing to use it"
            )


def ensure_dir(path: Path) -> Path:
    """Create a user data directory (not world-writable, 0700 for new ones)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{path}: cannot create directory: {exc.strerror}") from None
    return path
