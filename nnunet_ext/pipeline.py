"""Helpers for running the user-facing chain from Python (the demo, the reproduction scripts).

Every step runs as the command a user would type, in its own process. Short or budgeted schedules are
trainer variants written as a small module into a folder that ``nnUNet_extTrainer`` lists, which is how a
user adds schedule variants of their own.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List, NamedTuple, Optional, Sequence

from nnunet_ext.environment import ext_trainer_path_with_shim

STOCK_TRAINER = "nnUNetTrainer"
VARIANT_CLASS = '''

class {variant}({name}):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
{seeding}        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = {epochs}
        self.num_iterations_per_epoch = {iterations}
        self.num_val_iterations_per_epoch = {val_iterations}
{save_every}'''
SEEDING = """        random.seed({seed})
        np.random.seed({seed})
        torch.manual_seed({seed})
"""
SKIP_FINAL_VALIDATION = '''    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        self.print_to_log_file("Final validation skipped: with fold 'all' it would only re-predict the training "
                               "cases; the test set is evaluated separately.")
'''


def variant_name(trainer: str, suffix: str, seed: Optional[int] = None) -> str:
    """``<trainer>_<suffix>``, or ``<trainer>_<suffix>_seed<seed>`` for a seeded variant."""
    return f"{trainer}_{suffix}" if seed is None else f"{trainer}_{suffix}_seed{seed}"


def write_schedule_variants(folder: str, trainers: Sequence[str], suffix: str, epochs: int, iterations: int,
                            val_iterations: int = 2, skip_final_validation: bool = False,
                            seeds: Sequence[Optional[int]] = (None,), save_every: Optional[int] = None) -> List[str]:
    """Write ``nnunet_ext_<suffix>_trainers.py`` into ``folder`` with one subclass per trainer and seed (see
    :func:`variant_name`) that only changes the schedule: epochs, iterations, optionally how often
    ``checkpoint_latest`` is written (``save_every`` epochs; nnU-Net: 50), the seed of Python's, NumPy's and
    torch's generators before the network is built, and, for ``fold all`` runs, the final validation, which
    would only re-predict the training cases. Returns the variant class names, trainer-major."""
    lines = [f'"""Schedule variants written by nnunet_ext ({suffix})."""', "import random", "", "import numpy as np",
             "import torch", ""]
    for trainer in trainers:
        lines.append("from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer" if trainer == STOCK_TRAINER
                     else f"from nnunet_ext.trainers import {trainer}")
    variants = []
    for trainer in trainers:
        for seed in seeds:
            variants.append(variant_name(trainer, suffix, seed))
            lines.append(VARIANT_CLASS.format(
                variant=variants[-1], name=trainer, epochs=epochs, iterations=iterations,
                val_iterations=val_iterations, seeding="" if seed is None else SEEDING.format(seed=seed),
                save_every="" if save_every is None else f"        self.save_every = {save_every}\n"))
            if skip_final_validation:
                lines.append(SKIP_FINAL_VALIDATION)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"nnunet_ext_{suffix}_trainers.py"), "w") as f:
        f.write("\n".join(lines))
    return variants


def pipeline_environment(work: str, variants_folder: str) -> Dict[str, str]:
    """Environment with nnU-Net's three folders inside ``work`` and our trainers plus the variants findable."""
    folders = {name: os.path.join(work, name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for path in folders.values():
        os.makedirs(path, exist_ok=True)
    env = dict(os.environ, **folders, nnUNet_extTrainer=ext_trainer_path_with_shim(variants_folder))
    env.setdefault("nnUNet_def_n_proc", "2")
    env.setdefault("nnUNet_compile", "f")
    return env


class BudgetedRun(NamedTuple):
    """The ``<trainer>_budget`` variants of a ``fold all`` experiment and the environment that finds them."""
    epochs: int
    iterations_per_epoch: int
    variants: List[str]
    env: Dict[str, str]


def add_budget_arguments(parser: argparse.ArgumentParser, work_dir: str, iterations: int,
                         iterations_per_epoch: int = 50) -> None:
    """The options every :func:`budgeted_run` experiment takes: ``--work-dir``, the budget (``--iterations``,
    ``--iterations-per-epoch``), checkpointing and continuing (``--save-every``, ``--c``) and ``-device``."""
    parser.add_argument("--work-dir", default=work_dir)
    parser.add_argument("--iterations", type=int, default=iterations, help="training budget in iterations")
    parser.add_argument("--iterations-per-epoch", type=int, default=iterations_per_epoch)
    parser.add_argument("--save-every", type=int, default=1, help="checkpoint_latest every this many epochs")
    parser.add_argument("--c", action="store_true", help="continue unfinished trainings (nnUNetv2_train --c)")
    parser.add_argument("-device", default="cuda", choices=("cpu", "cuda"))


def budgeted_run(work: str, trainers: Sequence[str], iterations: int, iterations_per_epoch: int,
                 seeds: Sequence[Optional[int]] = (None,), save_every: Optional[int] = None) -> BudgetedRun:
    """Write ``<trainer>_budget`` variants (``_budget_seed<k>`` per seed when seeds are given) training
    ``iterations`` (rounded up to whole epochs of ``iterations_per_epoch``) without the final validation, and
    nnU-Net's folders inside ``work``."""
    epochs = max(1, math.ceil(iterations / iterations_per_epoch))
    per_epoch = min(iterations, iterations_per_epoch)
    variants_folder = os.path.join(work, "trainers")
    variants = write_schedule_variants(variants_folder, trainers, "budget", epochs, per_epoch, val_iterations=5,
                                       skip_final_validation=True, seeds=seeds, save_every=save_every)
    return BudgetedRun(epochs, per_epoch, variants, pipeline_environment(work, variants_folder))


def plans_with_batch_size(preprocessed_dataset: str, batch_size: int, configuration: str,
                          patch_size: Optional[Sequence[int]] = None) -> str:
    """Write a copy of nnUNetPlans with another batch size (0: the plans') and, if given, another patch size
    (same data, same network) and return its identifier, ``nnUNetPlansBudget``."""
    with open(os.path.join(preprocessed_dataset, "nnUNetPlans.json")) as f:
        plans = json.load(f)
    plans["plans_name"] = "nnUNetPlansBudget"
    if batch_size:
        plans["configurations"][configuration]["batch_size"] = batch_size
    if patch_size:
        plans["configurations"][configuration]["patch_size"] = list(patch_size)
    with open(os.path.join(preprocessed_dataset, "nnUNetPlansBudget.json"), "w") as f:
        json.dump(plans, f, indent=1)
    return "nnUNetPlansBudget"


def console_script(name: str) -> str:
    """Path of an installed console script of this Python environment."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    found = beside if os.path.isfile(beside) else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"'{name}' is not installed in this environment; install nnunetv2 (pip install nnunetv2).")
    return found


def nnunet_ext_command(*args: str) -> List[str]:
    """The ``nnunet_ext`` command of this Python environment."""
    return [sys.executable, "-m", "nnunet_ext.cli", *args]


def run_step(title: str, command: List[str], env: Dict[str, str]) -> None:
    """Run one command of the chain, streaming its output, and stop if it fails."""
    print(f"\n=== {title}\n$ {' '.join(command)}", flush=True)
    start = time.time()
    subprocess.run(command, env=env, check=True)
    print(f"--- {title}: done in {time.time() - start:.1f} s", flush=True)
