"""``nnunet_ext env``: where nnU-Net finds our trainers, and how to tell it.

nnU-Net ≥ 2.8 searches the folders listed in ``nnUNet_extTrainer`` for trainer classes. We ship a folder
holding a single shim module (see ``_nnunet_shim``). ``nnunet_ext`` sets the variable for its own
commands; for the stock ``nnUNetv2_*`` commands it is set by ``nnunet_ext.pth`` at interpreter start
(installed with the package) or exported by hand with what ``nnunet_ext env`` prints.
"""
import argparse
import os

SHIM_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_nnunet_shim")
NNUNET_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def ext_trainer_path_with_shim(current: str = "") -> str:
    """``nnUNet_extTrainer`` value that contains our shim folder (kept first) plus what was set before."""
    entries = [p for p in current.split(os.pathsep) if p and os.path.abspath(p) != SHIM_FOLDER]
    return os.pathsep.join([SHIM_FOLDER] + entries)


def register_trainers() -> None:
    """Make our trainers discoverable by nnU-Net in this process and the processes it starts."""
    os.environ["nnUNet_extTrainer"] = ext_trainer_path_with_shim(os.environ.get("nnUNet_extTrainer", ""))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shell", action="store_true", help="print only export lines, for eval \"$(nnunet_ext env --shell)\"")


def run(args: argparse.Namespace) -> None:
    value = ext_trainer_path_with_shim(os.environ.get("nnUNet_extTrainer", ""))
    print(f"export nnUNet_extTrainer={value}")
    if args.shell:
        return
    for name in NNUNET_VARIABLES:
        state = os.environ.get(name)
        print(f"# {name} = {state}" if state else f"# {name} is not set: export it as nnU-Net's documentation says")
