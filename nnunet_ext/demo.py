"""``nnunet_ext demo``: the whole chain on a small synthetic dataset with unlabeled cases, in a few minutes.

convert (generate) → ``nnunet_ext plan_and_preprocess`` → ``nnUNetv2_train`` with a short variant of the
chosen trainer → stock ``nnUNetv2_predict`` → ``nnunet_ext evaluate``. Every step runs as the command a user
would type, in its own process, inside a work folder of its own (nnU-Net's three folders are set there, so
the demo never touches a user's real ones). The short variant is written as a small module in the work
folder and found through ``nnUNet_extTrainer``, which is how a user adds their own schedule variants.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time
from typing import List

import torch

from nnunet_ext.environment import ext_trainer_path_with_shim
from nnunet_ext.trainers import __all__ as OUR_TRAINERS

STOCK_TRAINER = "nnUNetTrainer"
VARIANT_TEMPLATE = '''"""Short-schedule variant written by nnunet_ext demo."""
import torch

{import_line}


class {name}_demo({name}):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = {epochs}
        self.num_iterations_per_epoch = {iterations}
        self.num_val_iterations_per_epoch = 2
'''


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-tr", "--trainer", default="nnUNetTrainerMeanTeacher", choices=OUR_TRAINERS + [STOCK_TRAINER],
                        help="trainer to demonstrate (nnUNetTrainer = the supervised-only baseline)")
    parser.add_argument("-d", "--dataset-id", type=int, default=999, help="dataset id of the synthetic dataset")
    parser.add_argument("-o", "--work-dir", default="nnunet_ext_demo", help="folder for everything the demo writes")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the short schedule")
    parser.add_argument("--iterations", type=int, default=20, help="training iterations per epoch")
    parser.add_argument("-device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))


def write_variant(folder: str, trainer: str, epochs: int, iterations: int) -> str:
    """Write the ``<trainer>_demo`` module into ``folder`` and return the variant's class name."""
    import_line = ("from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer" if trainer == STOCK_TRAINER
                   else f"from nnunet_ext.trainers import {trainer}")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "nnunet_ext_demo_trainers.py"), "w") as f:
        f.write(VARIANT_TEMPLATE.format(import_line=import_line, name=trainer, epochs=epochs, iterations=iterations))
    return f"{trainer}_demo"


def console_script(name: str) -> str:
    """Path of an installed console script of this Python environment."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    found = beside if os.path.isfile(beside) else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"'{name}' is not installed in this environment; install nnunetv2 (pip install nnunetv2).")
    return found


def step(title: str, command: List[str], env: dict) -> None:
    """Run one command of the chain, streaming its output, and stop the demo if it fails."""
    print(f"\n=== {title}\n$ {' '.join(command)}", flush=True)
    start = time.time()
    subprocess.run(command, env=env, check=True)
    print(f"--- {title}: done in {time.time() - start:.1f} s", flush=True)


def run(args: argparse.Namespace) -> None:
    work = os.path.abspath(args.work_dir)
    folders = {name: os.path.join(work, name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for path in folders.values():
        os.makedirs(path, exist_ok=True)
    variant = write_variant(os.path.join(work, "trainers"), args.trainer, args.epochs, args.iterations)
    env = dict(os.environ, **folders, nnUNet_extTrainer=ext_trainer_path_with_shim(os.path.join(work, "trainers")))
    env.setdefault("nnUNet_def_n_proc", "2")
    env.setdefault("nnUNet_compile", "f")
    dataset = str(args.dataset_id)
    ext = [sys.executable, "-m", "nnunet_ext.cli"]

    from nnunet_ext.dataset_conversion.synthetic import write_synthetic_dataset
    print("=== convert: generating the synthetic dataset", flush=True)
    raw = write_synthetic_dataset(args.dataset_id, num_labeled=6, num_unlabeled=10, num_test=4,
                                  raw_root=folders["nnUNet_raw"], overwrite=True)
    print(f"--- raw dataset: {raw}")
    step("plan and preprocess", ext + ["plan_and_preprocess", "-d", dataset, "-c", "3d_fullres", "-np", "2",
                                       "-npfp", "2"], env)
    step(f"train {variant}", [console_script("nnUNetv2_train"), dataset, "3d_fullres", "0", "-tr", variant,
                              "-device", args.device], env)
    predictions = os.path.join(work, f"predictions_{variant}")
    step("predict (stock nnUNetv2_predict)",
         [console_script("nnUNetv2_predict"), "-i", os.path.join(raw, "imagesTs"), "-o", predictions, "-d", dataset,
          "-c", "3d_fullres", "-f", "0", "-tr", variant, "-device", args.device, "-npp", "0", "-nps", "0"], env)
    summary = os.path.join(predictions, "summary.json")
    step("evaluate", ext + ["evaluate", "-ref", os.path.join(raw, "labelsTs"), "-pred", predictions, "-o", summary],
         env)
    model = os.path.join(folders["nnUNet_results"], os.path.basename(raw), f"{variant}__nnUNetPlans__3d_fullres")
    print(f"\nDemo finished. Where everything went:\n"
          f"  raw dataset          {raw}\n"
          f"  preprocessed data    {os.path.join(folders['nnUNet_preprocessed'], os.path.basename(raw))}\n"
          f"  trained model        {model}  (progress.png and training log in fold_0/)\n"
          f"  predictions          {predictions}\n"
          f"  evaluation summary   {summary}\n"
          f"  trainer variant      {os.path.join(work, 'trainers', 'nnunet_ext_demo_trainers.py')}")
