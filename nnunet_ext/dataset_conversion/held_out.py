"""The held-out test split of converters whose source has none: drawn with a seed or read from a file, and
recorded as id lists in dataset.json (DESIGN.md §3), so that a split survives a change of NumPy's generator.

``--split-file`` takes ``{"train": [ids], "test": [ids]}`` or the dataset.json of an earlier conversion, whose
recorded split is under the converter's key (e.g. ``kvasir_split``, ``myops_split``).
"""
import argparse
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

SPLIT_RULE = "round(test_fraction * N) ids drawn by numpy.random.default_rng(seed).permutation over the sorted ids"


def case_key(name: str) -> str:
    """An id as a split file may write it: a base name whose extension is dropped (``cju0qkwl.jpg``)."""
    return os.path.splitext(os.path.basename(name.strip()))[0]


def split_ids(ids: Sequence[str], test_fraction: float = 0.2, seed: int = 0) -> Tuple[List[str], List[str]]:
    """(train, test) ids: ``round(test_fraction · N)`` ids drawn with ``default_rng(seed)`` from the sorted ids."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    ordered = sorted(ids)
    num_test = int(round(test_fraction * len(ordered)))
    chosen = set(np.random.default_rng(seed).permutation(len(ordered))[:num_test].tolist())
    test = [case for i, case in enumerate(ordered) if i in chosen]
    train = [case for i, case in enumerate(ordered) if i not in chosen]
    if not train:
        raise ValueError(f"no training case left: {len(ordered)} case(s) and --test-fraction {test_fraction}")
    return train, test


def read_split_file(path: str, ids: Sequence[str], key: str) -> Tuple[List[str], List[str]]:
    """(train, test) ids of a JSON split file, or of a dataset.json holding a split recorded under ``key``.

    Every listed id must be a case of the source and in one list only; cases listed nowhere are left out.
    """
    try:
        with open(path) as f:
            split = json.load(f)
        if isinstance(split, dict) and key in split:
            split = split[key]
        train, test = ([case_key(str(i)) for i in split[part]] for part in ("train", "test"))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a split file {{\"train\": [ids], \"test\": [ids]}} nor a dataset.json with "
                         f"'{key}' ({type(e).__name__}: {e})") from None
    unknown = sorted(set(train + test) - set(ids))
    both = sorted(set(train) & set(test))
    repeated = sorted({i for i in train + test if (train + test).count(i) > 1} - set(both))
    if unknown or both or repeated:
        problems = [f"{what}: {', '.join(values[:10])}" for what, values in
                    (("not in the release", unknown), ("in both lists", both), ("listed twice", repeated)) if values]
        raise ValueError(f"{path}: " + "; ".join(problems))
    if not train:
        raise ValueError(f"{path}: the train list is empty")
    return sorted(train), sorted(test)


def choose_split(ids: Sequence[str], key: str, test_fraction: float = 0.2, seed: int = 0,
                 split_file: Optional[str] = None) -> Tuple[List[str], List[str], Dict[str, object]]:
    """(train, test, record): the split drawn or read, and what dataset.json records under ``key``."""
    if split_file is not None:
        train, test = read_split_file(split_file, ids, key)
        record: Dict[str, object] = {"split_file": os.path.abspath(split_file)}
    else:
        train, test = split_ids(ids, test_fraction, seed)
        record = {"test_fraction": test_fraction, "seed": seed, "rule": SPLIT_RULE}
    record.update(num_train=len(train), num_test=len(test), train=train, test=test)
    return train, test, record


def add_split_arguments(parser: argparse.ArgumentParser, default_fraction: float = 0.2) -> None:
    """``--test-fraction``, ``--seed`` and ``--split-file`` (the defaults are applied by :func:`split_settings`,
    so that giving ``--split-file`` together with the others can be refused)."""
    parser.add_argument("--test-fraction", type=float,
                        help=f"share of the cases drawn for the test set (default: {default_fraction})")
    parser.add_argument("--seed", type=int, help="seed of the split (default: 0)")
    parser.add_argument("--split-file", help='JSON {"train": [ids], "test": [ids]}, or the dataset.json of an '
                                             'earlier conversion, instead of a drawn split')


def split_settings(args: argparse.Namespace, default_fraction: float = 0.2) -> Dict[str, object]:
    """``test_fraction``, ``seed`` and ``split_file`` from the parsed arguments, defaults applied."""
    if args.split_file is not None and (args.test_fraction is not None or args.seed is not None):
        raise ValueError("--split-file replaces --test-fraction / --seed; give one or the other")
    return {"test_fraction": default_fraction if args.test_fraction is None else args.test_fraction,
            "seed": 0 if args.seed is None else args.seed, "split_file": args.split_file}
