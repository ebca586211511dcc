"""`infiniloopd install-service`: install the systemd user unit for this installation."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from importlib import resources
from pathlib import Path

from infiniloopd import paths
from infiniloopd.errors import UserError

UNIT_NAME = "infiniloop.service"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stdout", action="store_true", help="print the unit instead of writing it"
    )
    parser.add_argument(
        "--exec",
        dest="exec_path",
        default=None,
        help="the infiniloopd to run (default: this installation's)",
    )


def unit_template() -> str:
    return (resources.files("infiniloopd") / "data" / UNIT_NAME).read_text(encoding="utf-8")


def installed_command() -> list[str]:
    """How systemd should start this installation of the daemon, as an argv prefix."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "infiniloopd" and argv0.is_file():
        # absolute(), not resolve(): a venv's bin/ must stay in the path.
        return [str(argv0.absolute())]
    beside = Path(sys.executable).parent / "infiniloopd"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("infiniloopd")
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "infiniloopd"]


def systemd_quote(arg: str) -> str:
    # systemd splits ExecStart like a shell, with its own specifiers starting with % and $.
    arg = arg.replace("%", "%%").replace("$", "$$")
    return shlex.quote(arg) if arg != shlex.quote(arg) else arg


def render_unit(command: list[str]) -> str:
    """The shipped unit with ExecStart pointing at `command run`."""
    exec_start = " ".join(systemd_quote(a) for a in [*command, "run"])
    lines = []
    for line in unit_template().splitlines():
        if line.startswith("ExecStart="):
            line = f"ExecStart={exec_start}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def unit_dir() -> Path:
    # paths.config_dir() is $XDG_CONFIG_HOME/infiniloop; units live beside it.
    return paths.config_dir().parent / "systemd" / "user"


def main(args: argparse.Namespace) -> int:
    command = [args.exec_path] if args.exec_path else installed_command()
    if args.exec_path and not Path(args.exec_path).is_file():
        raise UserError(f"--exec: {args.exec_path}: no such file")
    text = render_unit(command)
    if args.stdout:
        sys.stdout.write(text)
        return 0
    target = unit_dir() / UNIT_NAME
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        old = target.read_text(encoding="utf-8") if target.exists() else None
        tmp = target.with_name(f".{UNIT_NAME}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    except OSError as exc:
        raise UserError(f"{target}: cannot write the unit: {exc.strerror or exc}") from None
    verb = "installed" if old is None else ("unchanged" if old == text else "updated")
    print(f"{verb} {target} (ExecStart={' '.join(command)} run)")
    print("now run:")
    print("  systemctl --user daemon-reload")
    print("  systemctl --user enable --now infiniloop")
    return 0
