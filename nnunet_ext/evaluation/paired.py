"""Comparing two methods on the same test cases, for the reproduction scripts' tables: per-case Dice from an
``nnunet_ext evaluate`` summary, and means with their standard errors (of paired differences, too)."""
import json
import math
import os
from typing import Dict, Sequence


def per_case_dice(summary_file: str) -> Dict[str, Dict[str, float]]:
    """``{case: {class key: Dice}}`` of an evaluate summary (case = the reference file name without ending)."""
    with open(summary_file) as f:
        summary = json.load(f)
    return {os.path.basename(case["reference_file"]).split(".")[0]: {k: v["Dice"] for k, v in case["metrics"].items()}
            for case in summary["metric_per_case"]}


def mean_and_standard_error(values: Sequence[float]) -> str:
    """``mean ± standard error`` of fractions, in percent (the mean alone for one value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{100 * mean:.1f}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{100 * mean:.1f} ± {100 * sd / math.sqrt(len(values)):.1f}"
