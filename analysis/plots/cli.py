"""Command line shared by the figure modules.

Every figure module is called as ``python -m analysis.plots.<module> --settings JSON <figure>
[options]``: ``--settings`` is the config's ``plots`` section, ``<figure>`` a figure family with
its own options. A module lists its families as :class:`Subcommand` values and gets its
``main`` from :func:`command_line`, which parses, builds the
:class:`~analysis.plots.style.PlotStyle` and draws.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from analysis.core.errors import cli_main
from analysis.plots.style import PlotStyle, style_from_settings

#: Options of an input or output path every call must give.
REQUIRED: Mapping[str, Any] = {"required": True}
#: Options of a list (one or more values) every call must give.
REQUIRED_LIST: Mapping[str, Any] = {"nargs": "+", "required": True}
#: Options of ``--workers``: processes drawing a family's figures (the rule's threads).
WORKERS: Mapping[str, Any] = {"type": int, "default": 1, "help": "processes drawing figures"}


class Subcommand(NamedTuple):
    """A figure family of a module's command line.

    ``options`` maps each option (``--prefix``) to its ``add_argument`` keywords; ``draw`` gets
    the parsed arguments, the ``plots`` settings and the style.
    """

    draw: Callable[[argparse.Namespace, Mapping[str, Any], PlotStyle], object]
    options: Mapping[str, Mapping[str, Any]]
    help: str | None = None


def command_line(
    description: str, subcommands: Mapping[str, Subcommand]
) -> Callable[[Sequence[str] | None], int]:
    """The ``main(argv)`` of a figure module: parse ``--settings`` and a subcommand with its
    options, build the style and draw; returns the exit code (see :func:`cli_main`)."""

    def main(argv: Sequence[str] | None = None) -> None:
        parser = argparse.ArgumentParser(description=description)
        parser.add_argument("--settings", required=True, help="the plots config section as JSON")
        commands = parser.add_subparsers(dest="figure", required=True)
        for name, subcommand in subcommands.items():
            # only a given help lists the subcommand with a text in --help
            extra = {} if subcommand.help is None else {"help": subcommand.help}
            command = commands.add_parser(name, **extra)
            for option, keywords in subcommand.options.items():
                command.add_argument(option, **keywords)
        args = parser.parse_args(argv)
        settings = json.loads(args.settings)
        subcommands[args.figure].draw(args, settings, style_from_settings(settings))

    main.__doc__ = f"{description} Subcommands: {', '.join(subcommands)} (see ``--help``)."
    return cli_main(main)
