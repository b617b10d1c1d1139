"""Real data: the LA 2018 h5 release in ../shared/data (first 40 of train.list, first 10 of test.list).

convert (16 labeled + 24 unlabeled + 10 test) → plan_and_preprocess (2d) → UA-MT for a few iterations with
the plans' batch lowered to 2 for the CPU (a plans copy, as nnU-Net's documentation suggests) → stock
prediction of one test case → evaluate. UA-MT's certainty mask must keep a fraction strictly between 0 and 1.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from nnunet_ext.environment import ext_trainer_path_with_shim

DATASET_ID = 801
EXT_TRAINERS = str(Path(__file__).parent / "ext_trainers")


def run(*command: str) -> None:
    env = dict(os.environ, nnUNet_extTrainer=ext_trainer_path_with_shim(EXT_TRAINERS))
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"


def test_la_uamt_train_predict_evaluate(shared_data, nnunet_folders, tmp_path):
    ext = [sys.executable, "-m", "nnunet_ext.cli"]
    run(*ext, "convert", "la", "-i", str(shared_data / "LA_2018_h5"), "-d", str(DATASET_ID), "--num-labeled", "16",
        "--only-present", "-np", "2")
    raw = Path(nnunet_folders["nnUNet_raw"]) / "Dataset801_LA"
    assert len(list((raw / "imagesTrUnlabeled").glob("*.nii.gz"))) == 24
    run(*ext, "plan_and_preprocess", "-d", str(DATASET_ID), "-c", "2d", "-np", "2", "-npfp", "2")

    preprocessed = Path(nnunet_folders["nnUNet_preprocessed"]) / "Dataset801_LA"
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    plans["plans_name"] = "nnUNetPlansCPU"
    plans["configurations"]["2d"]["batch_size"] = 2
    (preprocessed / "nnUNetPlansCPU.json").write_text(json.dumps(plans))
    labeled = sorted(p.name[:-len(".nii.gz")] for p in (raw / "labelsTr").glob("*.nii.gz"))
    (preprocessed / "splits_final.json").write_text(json.dumps([{"train": labeled[1:], "val": labeled[:1]}]))

    trainer = "nnUNetTrainerUAMT_smoke"
    run("nnUNetv2_train", str(DATASET_ID), "2d", "0", "-tr", trainer, "-p", "nnUNetPlansCPU", "-device", "cpu")
    fold = Path(nnunet_folders["nnUNet_results"]) / "Dataset801_LA" / f"{trainer}__nnUNetPlansCPU__2d" / "fold_0"
    logged = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)["logging"]
    assert all(0 < value < 1 for value in logged["certain_fraction"]), logged["certain_fraction"]

    test_case = sorted((raw / "imagesTs").glob("*_0000.nii.gz"))[0]
    inputs, reference = tmp_path / "in", tmp_path / "ref"
    inputs.mkdir()
    reference.mkdir()
    shutil.copy(test_case, inputs)
    shutil.copy(raw / "labelsTs" / test_case.name.replace("_0000", ""), reference)
    prediction = tmp_path / "pred"
    run("nnUNetv2_predict", "-i", str(inputs), "-o", str(prediction), "-d", str(DATASET_ID), "-c", "2d", "-f", "0",
        "-tr", trainer, "-p", "nnUNetPlansCPU", "-device", "cpu", "-npp", "0", "-nps", "0", "--disable_tta")
    run(*ext, "evaluate", "-ref", str(reference), "-pred", str(prediction), "-o", str(tmp_path / "summary.json"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["units"] == "mm" and 0 <= summary["mean"]["1"]["Dice"] <= 1
