"""``nnunet_ext demo`` runs the chain for the trainer it is given on a dataset of that trainer's kind (CI runs the
default, Mean Teacher on 3-D volumes with unlabeled cases, through the README's set-up command)."""
import json
import sys


def test_demo_of_gazesup_runs_on_a_gaze_dataset(tmp_path, run_command):
    work = tmp_path / "demo"
    run_command(sys.executable, "-m", "nnunet_ext.cli", "demo", "-tr", "nnUNetTrainerGazeSup", "-o", str(work),
                "-d", "997", "--epochs", "1", "--iterations", "3", "-device", "cpu")
    model = work / "nnUNet_results" / "Dataset997_SyntheticGaze" / "nnUNetTrainerGazeSup_demo__nnUNetPlans__2d"
    assert (model / "fold_0" / "checkpoint_final.pth").is_file()
    summary = json.loads((work / "predictions_nnUNetTrainerGazeSup_demo" / "summary.json").read_text())
    assert set(summary["mean"]) == {"1"} and 0 <= summary["mean"]["1"]["Dice"] <= 1
    assert len(summary["metric_per_case"]) == 4


def test_demo_of_cmc_trains_on_two_partner_datasets_and_predicts_both(tmp_path, run_command):
    work = tmp_path / "demo"
    run_command(sys.executable, "-m", "nnunet_ext.cli", "demo", "-tr", "nnUNetTrainerCMC", "-o", str(work),
                "-d", "993", "--epochs", "1", "--iterations", "3", "-device", "cpu")
    for dataset in ("Dataset993_SynthCT", "Dataset994_SynthMR"):
        model = work / "nnUNet_results" / dataset / "nnUNetTrainerCMC_demo__nnUNetPlans__2d"
        assert (model / "fold_0" / "checkpoint_final.pth").is_file()
    for suffix in ("_993", "_994"):
        summary = json.loads((work / f"predictions_nnUNetTrainerCMC_demo{suffix}" / "summary.json").read_text())
        assert set(summary["mean"]) == {"1"} and len(summary["metric_per_case"]) == 2
