"""End to end, as a user types it: synthetic dataset → make_semisupervised → plan_and_preprocess →
nnUNetv2_train with each trainer (short variants living outside the package) → stock nnUNetv2_predict →
nnunet_ext evaluate; plus ``--c`` resume restoring the teacher and the step counter bit for bit."""
import json
import os
import sys
from pathlib import Path

import pytest
import torch

from conftest import resumed_trainer
from nnunet_ext.training.term_logger import checkpoint_method_state


TRAINERS = ["nnUNetTrainerMeanTeacher", "nnUNetTrainerUAMT", "nnUNetTrainerDTC", "nnUNetTrainerUGMCL"]
SOURCE_ID, DATASET_ID = 960, 961


NNUNET_EXT = (sys.executable, "-m", "nnunet_ext.cli")


@pytest.fixture(scope="module")
def semisupervised_dataset(nnunet_folders, run_command) -> Path:
    from nnunet_ext.dataset_conversion.synthetic import write_synthetic_dataset
    write_synthetic_dataset(SOURCE_ID, "SynthFull", num_labeled=10, num_unlabeled=0, num_test=2,
                            raw_root=nnunet_folders["nnUNet_raw"])
    run_command(*NNUNET_EXT, "make_semisupervised", "-d", str(SOURCE_ID), "-o", str(DATASET_ID), "--num-labeled", "5")
    run_command(*NNUNET_EXT, "plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "2", "-npfp", "2")
    raw = next(Path(nnunet_folders["nnUNet_raw"]).glob(f"Dataset{DATASET_ID}_*"))
    assert len(list((raw / "imagesTrUnlabeled").iterdir())) == 5
    return raw


def results_folder(nnunet_folders, trainer: str) -> Path:
    return next(Path(nnunet_folders["nnUNet_results"]).glob(f"Dataset{DATASET_ID}_*")) / \
        f"{trainer}__nnUNetPlans__3d_fullres"


@pytest.mark.parametrize("trainer", TRAINERS)
def test_train_predict_evaluate(trainer, semisupervised_dataset, nnunet_folders, run_command, tmp_path):
    smoke = f"{trainer}_smoke"
    run_command("nnUNetv2_train", str(DATASET_ID), "3d_fullres", "0", "-tr", smoke, "-device", "cpu")
    fold = results_folder(nnunet_folders, smoke) / "fold_0"
    checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == smoke
    assert checkpoint_method_state(checkpoint)["optimizer_steps"] == 6
    logged = checkpoint["logging"]
    terms = [k for k in logged if k.startswith(("loss_", "weight_", "certain_"))]
    assert terms and all(len(logged[k]) == 2 for k in terms)
    assert (fold / "progress.png").is_file()

    prediction = tmp_path / "pred"
    run_command("nnUNetv2_predict", "-i", str(semisupervised_dataset / "imagesTs"), "-o", str(prediction),
        "-d", str(DATASET_ID), "-c", "3d_fullres", "-f", "0", "-tr", smoke, "-device", "cpu",
        "-npp", "0", "-nps", "0", "--disable_tta")
    assert len(list(prediction.glob("*.nii.gz"))) == 2
    run_command(*NNUNET_EXT, "evaluate", "-ref", str(semisupervised_dataset / "labelsTs"), "-pred", str(prediction),
        "-o", str(tmp_path / "summary.json"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["mean"]) == {"1"} and 0 <= summary["mean"]["1"]["Dice"] <= 1


def test_resume_restores_teacher_bit_for_bit(semisupervised_dataset, nnunet_folders, run_command):
    """A finished 2-epoch run is continued to 3 epochs with ``--c``: the teacher, the step counter and the
    logged terms come back exactly as saved, and training goes on from there."""
    smoke = "nnUNetTrainerUAMT_smoke"
    fold = results_folder(nnunet_folders, smoke) / "fold_0"
    if not (fold / "checkpoint_final.pth").is_file():
        run_command("nnUNetv2_train", str(DATASET_ID), "3d_fullres", "0", "-tr", smoke, "-device", "cpu")
    os.replace(fold / "checkpoint_final.pth", fold / "checkpoint_latest.pth")
    from nnunet_ext.trainers import nnUNetTrainerUAMT
    trainer, saved = resumed_trainer(nnUNetTrainerUAMT, fold / "checkpoint_latest.pth")
    assert trainer.optimizer_steps == checkpoint_method_state(saved)["optimizer_steps"] == 6
    restored = trainer.teacher.state_dict()
    for key, value in checkpoint_method_state(saved)["teacher_weights"].items():
        assert torch.equal(restored[key].cpu(), value), key
    assert not all(torch.equal(saved["network_weights"][k], v)
                   for k, v in checkpoint_method_state(saved)["teacher_weights"].items())
    assert trainer.logger.get_value("certain_fraction", None) == saved["logging"]["certain_fraction"]

    os.environ["NNUNET_EXT_TEST_EPOCHS"] = "3"
    try:
        run_command("nnUNetv2_train", str(DATASET_ID), "3d_fullres", "0", "-tr", smoke, "-device", "cpu", "--c")
    finally:
        del os.environ["NNUNET_EXT_TEST_EPOCHS"]
    resumed = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint_method_state(resumed)["optimizer_steps"] == 9
    assert len(resumed["logging"]["certain_fraction"]) == 3
    assert resumed["logging"]["certain_fraction"][:2] == saved["logging"]["certain_fraction"]
