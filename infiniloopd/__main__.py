"""`infiniloopd`: run the daemon, or use its parts one-shot from the command line."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from infiniloopd import __version__
from infiniloopd.errors import UserError

# subcommand -> (module, one-line help). Modules are imported only when chosen, so
# `infiniloopd loop` does not pay for the daemon and the daemon not for the CLI tools.
SUBCOMMANDS = {
    "run": ("infiniloopd.daemon", "run the daemon (the default)"),
    "record": ("infiniloopd.cli_record", "render what the daemon would play into a file"),
    "play": ("infiniloopd.cli_play", "play audio files as crossfaded loops"),
    "loop": ("infiniloopd.cli_loop", "find and export seamless loops from audio files"),
    "generate": ("infiniloopd.cli_generate", "generate one clip and export its loop"),
    "install-service": ("infiniloopd.cli_service", "install the systemd user unit"),
}


def _setup_logging(verbose: bool) -> None:
    # No timestamps: under systemd the journal adds them.
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="infiniloopd",
        description="Endless, seamlessly looped AI-generated music, as a daemon.",
    )
    parser.add_argument("--version", action="version", version=f"infiniloopd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers = {}
    for name, (_module, helptext) in SUBCOMMANDS.items():
        subparsers[name] = p = sub.add_parser(name, help=helptext, description=helptext)
        # Also accepted after the subcommand; SUPPRESS keeps a -v given before it.
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    return parser, subparsers


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = build_parser()
    # `infiniloopd` alone, or with only the daemon's options, runs the daemon.
    if not set(argv) & (set(SUBCOMMANDS) | {"-h", "--help", "--version"}):
        argv.insert(0, "run")
    # Peek at the chosen subcommand so only its module is imported.
    chosen = next((a for a in argv if a in SUBCOMMANDS), None)
    modules = {}
    for name, (module_name, _help) in SUBCOMMANDS.items():
        if name != chosen:
            continue
        module = importlib.import_module(module_name)
        module.add_arguments(subparsers[name])
        modules[name] = module
    args = parser.parse_args(argv)
    _setup_logging(getattr(args, "verbose", False))
    try:
        return int(modules[args.command].main(args) or 0)
    except UserError as exc:
        print(f"infiniloopd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
