"""Real data: the LA 2018 h5 release in ../shared/data (first 40 of train.list, first 10 of test.list).

convert (16 labeled + 24 unlabeled + 10 test) → plan_and_preprocess (2d) → UA-MT for a few iterations with
the plans' batch lowered to 2 for the CPU (a plans copy, as nnU-Net's documentation suggests) → stock
prediction of one test case → evaluate. UA-MT's certainty mask must keep a fraction strictly between 0 and 1.
"""
import json
import shutil
import sys
from pathlib import Path

import torch

from conftest import require_shared

DATASET_ID = 801
NNUNET_EXT = (sys.executable, "-m", "nnunet_ext.cli")


def test_la_uamt_train_predict_evaluate(nnunet_folders, run_command, tmp_path):
    run_command(*NNUNET_EXT, "convert", "la", "-i", str(require_shared("LA_2018_h5") / "LA_2018_h5"), "-d",
        str(DATASET_ID),
        "--num-labeled", "16", "--only-present", "-np", "2")
    raw = Path(nnunet_folders["nnUNet_raw"]) / "Dataset801_LA"
    assert len(list((raw / "imagesTrUnlabeled").glob("*.nii.gz"))) == 24
    run_command(*NNUNET_EXT, "plan_and_preprocess", "-d", str(DATASET_ID), "-c", "2d", "-np", "2", "-npfp", "2")

    preprocessed = Path(nnunet_folders["nnUNet_preprocessed"]) / "Dataset801_LA"
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    plans["plans_name"] = "nnUNetPlansCPU"
    plans["configurations"]["2d"]["batch_size"] = 2
    (preprocessed / "nnUNetPlansCPU.json").write_text(json.dumps(plans))
    labeled = sorted(p.name[:-len(".nii.gz")] for p in (raw / "labelsTr").glob("*.nii.gz"))
    (preprocessed / "splits_final.json").write_text(json.dumps([{"train": labeled[1:], "val": labeled[:1]}]))

    trainer = "nnUNetTrainerUAMT_smoke"
    run_command("nnUNetv2_train", str(DATASET_ID), "2d", "0", "-tr", trainer, "-p", "nnUNetPlansCPU", "-device", "cpu")
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
    run_command("nnUNetv2_predict", "-i", str(inputs), "-o", str(prediction), "-d", str(DATASET_ID), "-c", "2d",
        "-f", "0", "-tr", trainer, "-p", "nnUNetPlansCPU", "-device", "cpu", "-npp", "0", "-nps", "0", "--disable_tta")
    run_command(*NNUNET_EXT, "evaluate", "-ref", str(reference), "-pred", str(prediction),
        "-o", str(tmp_path / "summary.json"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["units"] == "mm" and 0 <= summary["mean"]["1"]["Dice"] <= 1
