"""``nnunet_ext convert NAME ...``: one subcommand per public dataset.

Each converter module provides ``add_arguments(parser)`` and ``run(args)``. A converter's module is imported
only when its name is on the command line, so ``nnunet_ext convert --help`` stays fast and one converter's
optional dependencies never affect another.
"""
import argparse
import importlib
from typing import Dict

CONVERTERS: Dict[str, str] = {
    "la": "nnunet_ext.dataset_conversion.la2018",
    "kvasir": "nnunet_ext.dataset_conversion.kvasir",
    "nci_isbi": "nnunet_ext.dataset_conversion.nci_isbi",
}
"""Converter name on the command line -> module path."""


class _LazyConverterSubparsers(argparse._SubParsersAction):
    """argparse's subparsers action, importing the chosen converter to fill its parser just before parsing."""

    def __call__(self, parser, namespace, values, option_string=None):
        name = values[0]
        sub = self._name_parser_map.get(name)
        if sub is not None and sub.get_default("converter_run") is None:
            module = importlib.import_module(CONVERTERS[name])
            module.add_arguments(sub)
            sub.set_defaults(converter_run=module.run, command_prog=sub.prog)
        super().__call__(parser, namespace, values, option_string)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One subparser per entry of :data:`CONVERTERS`; its arguments come from the converter module."""
    subparsers = parser.add_subparsers(dest="converter", metavar="DATASET", required=True,
                                       action=_LazyConverterSubparsers)
    for name, module_name in CONVERTERS.items():
        subparsers.add_parser(name, help=f"see `nnunet_ext convert {name} -h` ({module_name})")


def run(args: argparse.Namespace) -> None:
    """Run the selected converter."""
    args.converter_run(args)
