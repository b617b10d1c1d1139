"""``nnunet_ext trainers``: every trainer and variant, one line each on what it does and the data it needs.

The lines come from the classes themselves (the first sentence of each class docstring), the data kind from
the base class, so the list cannot drift from the code. ``nnunet_ext trainers NAME`` looks one name up and
suggests the closest names for a misspelled ``-tr``.
"""
import argparse
import difflib
from typing import Dict, List, Tuple

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_ext import trainers
from nnunet_ext.trainers.nnUNetTrainerGazeSup import nnUNetTrainerGazeSup
from nnunet_ext.trainers.nnUNetTrainerMAML import nnUNetTrainerMAML
from nnunet_ext.trainers.partial_labels import nnUNetTrainerPartialLabels
from nnunet_ext.trainers.semi_supervised import nnUNetTrainerSemiSupervised
from nnunet_ext.trainers.two_datasets import nnUNetTrainerTwoDatasets

DATA_KINDS = ((nnUNetTrainerSemiSupervised, "labeled + imagesTrUnlabeled"),
              (nnUNetTrainerGazeSup, "gaze levels (convert --gaze-csv)"),
              (nnUNetTrainerTwoDatasets, "two partner datasets, each labeled + unlabeled (--joint plans)"),
              (nnUNetTrainerMAML, "labeled imagesTr, several co-registered channels"),
              (nnUNetTrainerPartialLabels, "partial labels (annotated_labels; make_partial_union)"))
STOCK_LINE = ("nnUNetTrainer", "labeled imagesTr", "stock nnU-Net, the supervised baseline (no nnunet_ext code)")


def summary(cls: type) -> str:
    """The first sentence of the class's own docstring, on one line (reST double backticks as single ones)."""
    text = " ".join((cls.__dict__.get("__doc__") or "").split()).replace("``", "`")
    end = text.find(". ")
    return text if end < 0 else text[:end + 1]


def data_kind(cls: type) -> str:
    """What a dataset must hold for ``cls``."""
    return next(kind for base, kind in DATA_KINDS + ((nnUNetTrainer, "labeled imagesTr"),) if issubclass(cls, base))


def catalog() -> List[Tuple[str, str, str]]:
    """(name, data kind, what it does) of stock nnU-Net's baseline and every nnunet_ext trainer."""
    rows = [STOCK_LINE]
    for name in trainers.__all__:
        cls = getattr(trainers, name)
        rows.append((name, data_kind(cls), summary(cls)))
    return rows


def suggestions(name: str, rows: List[Tuple[str, str, str]]) -> List[str]:
    """The trainer names closest to ``name`` (case-insensitive)."""
    names: Dict[str, str] = {row[0].lower(): row[0] for row in rows}
    return [names[n] for n in difflib.get_close_matches(name.lower(), list(names), n=3, cutoff=0.6)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext trainers``."""
    parser.add_argument("name", nargs="?", help="look up one trainer (closest names are suggested when it is not one)")


def run(args: argparse.Namespace) -> None:
    """Print the table, or the row of ``args.name``."""
    rows = catalog()
    if args.name is not None:
        found = [row for row in rows if row[0] == args.name]
        if not found:
            close = suggestions(args.name, rows)
            raise ValueError(f"no trainer is called {args.name}" +
                             (f"; did you mean {' or '.join(close)}?" if close else "") +
                             " (`nnunet_ext trainers` lists them all)")
        rows = found
    width = max(len(row[0]) for row in rows)
    kind_width = max(len(row[1]) for row in rows)
    for name, kind, text in rows:
        print(f"{name:{width}s}  {kind:{kind_width}s}  {text}")
