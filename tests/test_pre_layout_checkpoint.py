"""Checkpoints written before the layout by concern and the multi-stream base keep working.

``tests/data/ugmcl_pre_layout_checkpoint.pth`` was written by the code of commit b188dd1 (the last one before the
move): ``nnUNetv2_train 976 3d_tiny 0 -tr nnUNetTrainerUGMCL_smoke`` on ``write_synthetic_dataset(976,
"SynthPreLayout", num_labeled=5, num_unlabeled=3, num_test=1, seed=5)`` planned ``3d_fullres`` plus the
``3d_tiny`` configuration of ``conftest.add_tiny_configuration`` (2 epochs × 3 steps). It has that code's layout:
network keys ``unet.…`` and ``level_set_head.weight``, and the method state (teacher, step counter) as a top-level
``nnunet_ext_state`` key. Today's code predicts from it with the stock predictor and resumes it with ``--c``.
"""
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from conftest import resumed_trainer
from nnunet_ext.training.term_logger import checkpoint_method_state

CHECKPOINT = Path(__file__).parent / "data" / "ugmcl_pre_layout_checkpoint.pth"
DATASET_ID, DATASET_NAME, TRAINER = 976, "Dataset976_SynthPreLayout", "nnUNetTrainerUGMCL_smoke"
NNUNET_EXT = (sys.executable, "-m", "nnunet_ext.cli")


@pytest.fixture(scope="module")
def old():
    return torch.load(CHECKPOINT, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def model_folder(old, nnunet_folders, run_command) -> Path:
    """The dataset the checkpoint was trained on, preprocessed, with the checkpoint as the final one of fold 0."""
    from nnunet_ext.dataset_conversion.synthetic import write_synthetic_dataset
    write_synthetic_dataset(DATASET_ID, "SynthPreLayout", num_labeled=5, num_unlabeled=3, num_test=1, seed=5,
                            raw_root=nnunet_folders["nnUNet_raw"])
    run_command(*NNUNET_EXT, "plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1", "-npfp", "1")
    plans = old["init_args"]["plans"]
    (Path(nnunet_folders["nnUNet_preprocessed"]) / DATASET_NAME / "nnUNetPlans.json").write_text(json.dumps(plans))
    folder = Path(nnunet_folders["nnUNet_results"]) / DATASET_NAME / f"{TRAINER}__nnUNetPlans__3d_tiny"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(old["init_args"]["dataset_json"]))
    shutil.copy(CHECKPOINT, folder / "fold_0" / "checkpoint_final.pth")
    return folder


def test_the_checkpoint_has_the_old_layout(old):
    assert "nnunet_ext_state" in old and "nnunet_ext_state" not in old["logging"]
    assert any(k.startswith("unet.encoder.") for k in old["network_weights"])
    assert "level_set_head.weight" in old["network_weights"]


def test_its_weights_teacher_and_counter_load_into_todays_trainer(old, model_folder):
    from nnunet_ext.trainers import nnUNetTrainerUGMCL
    trainer, _ = resumed_trainer(nnUNetTrainerUGMCL, model_folder / "fold_0" / "checkpoint_final.pth")
    new_keys = {"level_set_head.weight": "level_set_head.seg_layers.0.weight",
                "level_set_head.bias": "level_set_head.seg_layers.0.bias"}

    def renamed(key: str) -> str:
        return new_keys.get(key, key[len("unet."):] if key.startswith("unet.") else key)

    student, teacher = trainer.student.state_dict(), trainer.teacher.state_dict()
    state = old["nnunet_ext_state"]
    for key, value in old["network_weights"].items():
        assert torch.equal(student[renamed(key)], value), key
    for key, value in state["teacher_weights"].items():
        assert torch.equal(teacher[renamed(key)], value), key
    assert trainer.optimizer_steps == state["optimizer_steps"] == 6
    assert trainer.current_epoch == old["current_epoch"] == 2


def test_the_stock_predictor_uses_it(model_folder, nnunet_folders, run_command, tmp_path):
    raw = Path(nnunet_folders["nnUNet_raw"]) / DATASET_NAME
    run_command("nnUNetv2_predict", "-i", str(raw / "imagesTs"), "-o", str(tmp_path), "-d", str(DATASET_ID),
                "-c", "3d_tiny", "-f", "0", "-tr", TRAINER, "-device", "cpu", "-npp", "0", "-nps", "0",
                "--disable_tta")
    assert len(list(tmp_path.glob("*.nii.gz"))) == 1


def test_training_resumes_from_it_with_c(old, model_folder, run_command):
    fold = model_folder / "fold_0"
    (fold / "checkpoint_final.pth").rename(fold / "checkpoint_latest.pth")
    run_command("nnUNetv2_train", str(DATASET_ID), "3d_tiny", "0", "-tr", TRAINER, "-device", "cpu", "--c",
                NNUNET_EXT_TEST_EPOCHS="3")
    resumed = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert "nnunet_ext_state" not in resumed
    assert checkpoint_method_state(resumed)["optimizer_steps"] == 9
    for key in ("loss_intra_task", "loss_cross_task", "certain_fraction"):
        assert resumed["logging"][key][:2] == old["logging"][key] and len(resumed["logging"][key]) == 3
    assert not any(k.startswith("unet.") for k in resumed["network_weights"])
