"""Shared test settings: nnU-Net's folders in a temporary place, CPU-friendly settings, the shared real data.

nnU-Net reads ``nnUNet_raw`` / ``nnUNet_preprocessed`` / ``nnUNet_results`` once, when ``nnunetv2.paths`` is
first imported, so they are set here at import time, before any test module is collected. Tests that need
an empty nnU-Net tree of their own pass the folders to our functions or run commands in subprocesses.
"""
import contextlib
import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import pytest

from nnunet_ext.environment import ext_trainer_path_with_shim

NNUNET_TEST_ROOT = tempfile.mkdtemp(prefix="nnunet_ext_tests_")
NNUNET_FOLDERS = {name: os.path.join(NNUNET_TEST_ROOT, name)
                  for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
for _path in NNUNET_FOLDERS.values():
    os.makedirs(_path)
os.environ.update(NNUNET_FOLDERS)
os.environ.update({"nnUNet_def_n_proc": "2", "nnUNet_n_proc_DA": "0", "nnUNet_compile": "f"})
TEST_TRAINERS = str(Path(__file__).parent / "ext_trainers")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(NNUNET_TEST_ROOT, ignore_errors=True)


def shared_data_folder() -> Path:
    """``../shared/data`` beside the checkout (or ``$NNUNET_EXT_SHARED_DATA``)."""
    return Path(os.environ.get("NNUNET_EXT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def require_shared(*relative_paths: str) -> Path:
    """The shared data folder, once it and every ``relative_paths`` entry in it exist; else the test is skipped
    with the reason (the folder ships beside the repository, not in it)."""
    folder = shared_data_folder()
    missing = [str(folder / p) for p in relative_paths if not (folder / p).exists()] if folder.is_dir() \
        else [str(folder)]
    if missing:
        pytest.skip(f"real-data test skipped: {', '.join(missing)} absent (../shared/data ships beside the "
                    f"repository, not in it)")
    return folder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared()


def converter(dataset: str) -> Callable[..., str]:
    """``convert(raw, monkeypatch, *args)``: ``nnunet_ext convert <dataset> *args`` run in this process with
    ``nnUNet_raw`` set to ``raw``; returns what it printed."""
    from nnunet_ext.cli import main

    def convert(raw: Path, monkeypatch, *args: str) -> str:
        monkeypatch.setenv("nnUNet_raw", str(raw))
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            main(["convert", dataset, *args])
        return printed.getvalue()

    return convert


@pytest.fixture(scope="session")
def nnunet_folders() -> dict:
    """The session's nnUNet_raw / _preprocessed / _results (already in os.environ)."""
    return dict(NNUNET_FOLDERS)


def _run_command(*command: str, **env_extra: str) -> subprocess.CompletedProcess:
    """Run a command as a user types it, with the short test trainer variants discoverable; on failure the
    assertion shows the tail of its output. Output is decoded as UTF-8 whatever the locale says (tqdm's
    bars are not ASCII, and CI may run under an ASCII locale)."""
    env = dict(os.environ, nnUNet_extTrainer=ext_trainer_path_with_shim(TEST_TRAINERS), **env_extra)
    result = subprocess.run(command, env=env, capture_output=True, encoding="utf-8", errors="replace")
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


@pytest.fixture(scope="session")
def run_command():
    """``run_command(*command, **extra_env)``: see ``_run_command``."""
    return _run_command


def add_tiny_configuration(plans_file: str, name: str = "3d_tiny", parent: str = "3d_fullres",
                           features: tuple = (4, 8, 16), patch_size: tuple = (16, 16, 16)) -> None:
    """Add to a plans file a configuration that inherits ``parent`` (same preprocessed data) with a tiny U-Net:
    ``len(features)`` stages, one convolution per stage, ``patch_size`` patches, batch 2 — a training step in a
    fraction of a second on the CPU, and checkpoints of a few hundred kilobytes."""
    import json
    with open(plans_file) as f:
        plans = json.load(f)
    architecture = json.loads(json.dumps(plans["configurations"][parent]["architecture"]))
    kwargs = architecture["arch_kwargs"]
    stages = len(features)
    kwargs.update(n_stages=stages, features_per_stage=list(features), n_conv_per_stage=[1] * stages,
                  n_conv_per_stage_decoder=[1] * (stages - 1), kernel_sizes=[[3] * len(patch_size)] * stages,
                  strides=[[1] * len(patch_size)] + [[2] * len(patch_size)] * (stages - 1))
    plans["configurations"][name] = {"inherits_from": parent, "patch_size": list(patch_size), "batch_size": 2,
                                     "architecture": architecture}
    with open(plans_file, "w") as f:
        json.dump(plans, f, indent=1)


def with_first_voxel(label_file, value: int) -> None:
    """Rewrite a label file in place with its first voxel set to ``value`` (same geometry): a label with a value
    its dataset does not declare."""
    import SimpleITK as sitk
    label = sitk.ReadImage(str(label_file))
    array = sitk.GetArrayFromImage(label)
    array.flat[0] = value
    changed = sitk.GetImageFromArray(array)
    changed.CopyInformation(label)
    sitk.WriteImage(changed, str(label_file))


def resumed_trainer(cls, checkpoint_file):
    """``(trainer, checkpoint)``: a trainer of ``cls`` rebuilt on the CPU from the ``init_args`` of
    ``checkpoint_file`` and restored from it, as ``nnUNetv2_train --c`` does, and the checkpoint as loaded."""
    import torch
    saved = torch.load(checkpoint_file, map_location="cpu", weights_only=False)
    args = saved["init_args"]
    trainer = cls(dict(args["plans"], continue_training=True), args["configuration"], args["fold"],
                  args["dataset_json"], torch.device("cpu"))
    trainer.load_checkpoint(str(checkpoint_file))
    return trainer, saved


def start_trainer(cls, plans: dict, dataset_json: dict, configuration: str = "3d_fullres", start_loaders: bool = True,
                  **attributes):
    """A trainer of ``cls`` (a subclass setting ``attributes``, as a variant would) on the CPU, initialized, with
    its loaders started unless ``start_loaders`` is False, deep supervision on and the network in train mode."""
    import torch
    trainer = type(cls.__name__, (cls,), attributes)(dict(plans, continue_training=False), configuration, 0,
                                                     dataset_json, torch.device("cpu"))
    trainer.initialize()
    if start_loaders:
        trainer.dataloader_train, trainer.dataloader_val = trainer.get_dataloaders()
    trainer.set_deep_supervision_enabled(True)
    trainer.network.train()
    return trainer
