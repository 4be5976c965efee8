"""The ``qwen-meter`` command: the argument parser (each command group adds its own
subcommands) and :func:`main`, which runs the chosen command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..base.errors import QwenMeterError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qwen-meter",
        description="Exact token counts, costs and limits for Qwen models on DashScope.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    from . import log as cli_log
    from . import report as cli_report
    from .catalogue import register as register_catalogue  # issue #12
    from .count import register as register_count
    from .dashboard import register as register_dashboard  # issue 25
    from .export import register as register_export  # issue #17
    from .models import register as register_models
    from .preflight import register as register_preflight
    from .price import register as register_price
    from .serve import register as register_serve  # issue 16: the gateway

    # The order of the commands in --help.
    register_count(sub)
    register_models(sub)
    register_price(sub)
    register_catalogue(sub)
    register_preflight(sub)
    cli_report.register(sub)
    cli_log.register(sub)
    register_export(sub)
    register_serve(sub)
    register_dashboard(sub)
    _own_usage(parser)
    return parser


def _own_usage(parser: argparse.ArgumentParser) -> None:
    """Each (sub)command remembers its parser, so that an option it does not know is reported
    with its own usage line, not the top-level one (argparse leaves unrecognised arguments to
    the top parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.set_defaults(command_parser=child)
                _own_usage(child)


def _version() -> str:
    # The package's own constant (a test keeps it equal to pyproject's): installed metadata
    # can be stale in an editable install.
    from .. import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        owner = getattr(args, "command_parser", parser)
        owner.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args.run(args))
    except QwenMeterError as exc:
        print(f"qwen-meter: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from complaining
        # about the unflushable stdout at exit.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("qwen-meter: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
