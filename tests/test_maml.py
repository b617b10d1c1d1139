"""MAML on synthetic co-registered datasets (3 channels with labels in 3-D, 4 channels with regions in 2-D): the
network's structure (one branch per channel, absent modalities, read-outs), modality dropout, the loss against a
hand computation, ``nnUNetv2_train`` / ``--c``, stock ``nnUNetv2_predict``, ``nnunet_ext predict --missing`` with
both protocols and on a folder where a case lacks a file, and ``nnunet_ext evaluate_missing`` for MAML and stock
nnU-Net (table shape, subsets, values against ``nnunet_ext evaluate`` on the same folders)."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import add_tiny_configuration, start_trainer
from nnunet_ext.cli import main as nnunet_ext
from nnunet_ext.dataset_conversion.synthetic import write_synthetic_multimodal_dataset
from nnunet_ext.evaluation.missing_modalities import present_subsets
from nnunet_ext.inference.missing_modalities import channel_indices, group_by_absent_channels
from nnunet_ext.trainers import nnUNetTrainerMAML
from nnunet_ext.training.modality_dropout import random_present_modalities

LABELS_ID, REGIONS_ID = 950, 951
NNUNET_EXT = (sys.executable, "-m", "nnunet_ext.cli")
SMOKE, STOCK_SMOKE = "nnUNetTrainerMAML_smoke", "nnUNetTrainer_smoke"
CONFIGURATIONS = {LABELS_ID: "3d_tiny", REGIONS_ID: "2d_tiny"}


@pytest.fixture(scope="module")
def datasets(nnunet_folders):
    """Both raw datasets, planned and preprocessed, with a tiny configuration each; ``{id: (raw, preprocessed)}``."""
    raw = Path(nnunet_folders["nnUNet_raw"])
    write_synthetic_multimodal_dataset(LABELS_ID, "SynthMM3", num_channels=3, shape=(24, 24, 24), raw_root=str(raw))
    write_synthetic_multimodal_dataset(REGIONS_ID, "SynthMM4", num_channels=4, shape=(6, 32, 32),
                                       label_set="regions", raw_root=str(raw))
    folders = {}
    for dataset_id, parent, patch in ((LABELS_ID, "3d_fullres", (16, 16, 16)), (REGIONS_ID, "2d", (32, 32))):
        nnunet_ext(["plan_and_preprocess", "-d", str(dataset_id), "-c", parent, "-np", "2", "-npfp", "2"])
        name = next(raw.glob(f"Dataset{dataset_id}_*")).name
        preprocessed = Path(nnunet_folders["nnUNet_preprocessed"]) / name
        add_tiny_configuration(str(preprocessed / "nnUNetPlans.json"), CONFIGURATIONS[dataset_id], parent,
                               features=(8, 16, 32), patch_size=patch)
        folders[dataset_id] = (raw / name, preprocessed)
    return folders


def plans_and_json(folder: Path):
    return (json.loads((folder / "nnUNetPlans.json").read_text()), json.loads((folder / "dataset.json").read_text()))


@pytest.fixture(scope="module")
def trainer(datasets):
    plans, dataset_json = plans_and_json(datasets[LABELS_ID][1])
    return start_trainer(nnUNetTrainerMAML, plans, dataset_json, "3d_tiny", start_loaders=False)


# ----------------------------------------------------------------------------------------------------------------
# the network
# ----------------------------------------------------------------------------------------------------------------

def build(trainer, deep_supervision: bool):
    return nnUNetTrainerMAML.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 3,
                                                        trainer.label_manager.num_segmentation_heads,
                                                        deep_supervision)


def test_one_half_width_branch_per_channel_with_the_same_parameters_with_and_without_deep_supervision(trainer):
    with_ds, without_ds = build(trainer, True), build(trainer, False)
    assert len(with_ds.branches) == 3
    assert [b.encoder.output_channels for b in with_ds.branches] == [[8, 8, 16]] * 3, "half of (8, 16, 32), min 8"
    assert all(b.encoder.stages[0][0].convs[0].conv.in_channels == 1 for b in with_ds.branches)
    assert {k: v.shape for k, v in with_ds.state_dict().items()} == \
        {k: v.shape for k, v in without_ds.state_dict().items()}
    without_ds.eval()
    with torch.no_grad():
        output = without_ds(torch.randn(2, 3, 16, 16, 16))
    assert isinstance(output, torch.Tensor) and output.shape == (2, 3, 16, 16, 16)
    training_output = with_ds(torch.randn(2, 3, 16, 16, 16))
    assert training_output[0].shape == (2, 3, 16, 16, 16), "the joint logits first, as nnU-Net's validation reads"
    assert len(training_output) == 4 and all(len(branch) == 2 for branch in training_output[1:])


def test_a_branch_never_sees_another_branchs_channel(trainer):
    network = build(trainer, True)
    x = torch.randn(1, 3, 16, 16, 16, requires_grad=True)
    output = network(x)
    for i in range(3):
        gradient = torch.autograd.grad(output[1 + i][0].sum(), x, retain_graph=True)[0]
        assert [bool(gradient[:, c].abs().sum() > 0) for c in range(3)] == [c == i for c in range(3)]
    joint = torch.autograd.grad(output[0].sum(), x)[0]
    assert all(joint[:, c].abs().sum() > 0 for c in range(3)), "the joint head fuses all modalities"


def test_absent_modalities_leave_the_fusion_and_the_branch_read_out_averages_present_branches(trainer):
    network = build(trainer, False).eval()
    x = torch.randn(1, 3, 16, 16, 16)
    changed = x.clone()
    changed[:, 1] = torch.randn(16, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(network(x), network(changed))
        network.set_absent_channels([1], "joint")
        assert torch.allclose(network(x), network(changed)), "an absent channel does not reach the joint head"
        network.set_absent_channels([1], "branches")
        readout = network(x)
        by_hand = (network.branches[0](x[:, :1]).softmax(1) + network.branches[2](x[:, 2:]).softmax(1)) / 2
    assert torch.allclose(readout.softmax(1), by_hand, atol=1e-5)
    with pytest.raises(ValueError, match="at least one modality"):
        network.set_absent_channels([0, 1, 2])
    with pytest.raises(ValueError, match="do not exist"):
        network.set_absent_channels([3])


def test_modality_dropout_keeps_at_least_one_modality_and_draws_every_subset():
    present = random_present_modalities(4000, 3, 1.0, torch.device("cpu"))
    assert present.any(1).all()
    assert len({tuple(row.tolist()) for row in present}) == 7
    assert random_present_modalities(50, 3, 0.0, torch.device("cpu")).all()
    half = random_present_modalities(4000, 3, 0.5, torch.device("cpu"))
    assert 0.5 < half.all(1).float().mean() < 0.65, "full set: kept (1/2) or drawn (1/2 · 1/7)"


def test_the_loss_is_the_weighted_joint_plus_every_branchs_deep_supervision(trainer):
    loss = trainer.loss
    weights = loss.per_branch.weight_factors
    torch.manual_seed(0)
    shapes = [(2, 3, 16, 16, 16), (2, 3, 8, 8, 8)]
    output = [torch.randn(*shapes[0])] + [[torch.randn(*s) for s in shapes] for _ in range(3)]
    target = [torch.randint(0, 3, (2, 1, *s[2:])).float() for s in shapes]
    base = loss.per_branch.loss
    branches = [sum(w * base(o, t) for w, o, t in zip(weights, branch, target) if w != 0) for branch in output[1:]]
    by_hand = weights[0] * base(output[0], target[0]) + trainer.branch_weight * sum(branches)
    terms = loss.terms(output, target)
    assert float(terms["loss"]) == pytest.approx(float(by_hand), rel=1e-6)
    assert set(terms) == {"loss", "loss_joint", "loss_branch_MR1", "loss_branch_MR2", "loss_branch_MR3"}
    assert float(terms["loss_branch_MR2"]) == pytest.approx(float(branches[1]), rel=1e-6)


def test_a_single_channel_dataset_is_refused(datasets):
    plans, dataset_json = plans_and_json(datasets[LABELS_ID][1])
    with pytest.raises(ValueError, match="one input channel"):
        nnUNetTrainerMAML(dict(plans, continue_training=False), "3d_tiny", 0,
                          dict(dataset_json, channel_names={"0": "MR1"}), torch.device("cpu"))


def test_missing_channels_are_checked():
    dataset_json = {"channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}, "file_ending": ".nii.gz"}
    assert channel_indices(dataset_json, ["flair", "T2"]) == (2, 3)
    with pytest.raises(ValueError, match="no such channel.*0 T1, 1 T1ce, 2 T2, 3 FLAIR"):
        channel_indices(dataset_json, ["T3"])
    with pytest.raises(ValueError, match="every channel"):
        channel_indices(dataset_json, ["T1", "T1ce", "T2", "FLAIR"])
    groups = group_by_absent_channels({"a": {0: "a0", 1: "a1", 2: "a2", 3: "a3"}, "b": {0: "b0", 2: "b2"}}, 4, (3,))
    assert groups == {(3,): ["a"], (1, 3): ["b"]}
    with pytest.raises(ValueError, match="case b would have no channel left"):
        group_by_absent_channels({"b": {3: "b3"}}, 4, (3,))
    assert len(present_subsets(4)) == 15 and present_subsets(3)[0] == (0, 1, 2) and len(present_subsets(3)) == 7


# ----------------------------------------------------------------------------------------------------------------
# as a user types it
# ----------------------------------------------------------------------------------------------------------------

def results(nnunet_folders, raw: Path, trainer: str, configuration: str) -> Path:
    return Path(nnunet_folders["nnUNet_results"]) / raw.name / f"{trainer}__nnUNetPlans__{configuration}"


@pytest.fixture(scope="module")
def trained(datasets, nnunet_folders, run_command):
    """Both datasets trained with MAML (2 epochs × 3 iterations), the 3-D one resumed with ``--c`` for a third
    epoch, and the 3-D one trained with stock nnU-Net too."""
    for dataset_id, configuration in CONFIGURATIONS.items():
        run_command("nnUNetv2_train", str(dataset_id), configuration, "0", "-tr", SMOKE, "-device", "cpu")
    run_command("nnUNetv2_train", str(LABELS_ID), "3d_tiny", "0", "-tr", SMOKE, "-device", "cpu", "--c",
                NNUNET_EXT_TEST_EPOCHS="3")
    run_command("nnUNetv2_train", str(LABELS_ID), "3d_tiny", "0", "-tr", STOCK_SMOKE, "-device", "cpu")
    return {i: results(nnunet_folders, datasets[i][0], SMOKE, c) for i, c in CONFIGURATIONS.items()}


def test_training_logs_every_term_and_resumes(trained):
    checkpoint = torch.load(trained[LABELS_ID] / "fold_0" / "checkpoint_final.pth", map_location="cpu",
                            weights_only=False)
    assert checkpoint["current_epoch"] == 3, "--c continued the finished 2-epoch run for a third epoch"
    for term in ("loss_joint", "loss_branch_MR1", "loss_branch_MR2", "loss_branch_MR3"):
        assert len(checkpoint["logging"][term]) == 3 and all(v > 0 for v in checkpoint["logging"][term]), term
    for folder in trained.values():
        assert (folder / "fold_0" / "progress.png").is_file()
        assert (folder / "fold_0" / "validation" / "summary.json").is_file()
    regions = torch.load(trained[REGIONS_ID] / "fold_0" / "checkpoint_final.pth", map_location="cpu",
                         weights_only=False)
    assert len(regions["logging"]["loss_branch_MR4"]) == 2


def predict(run_command, *args: str):
    return run_command(*args, "-device", "cpu", "-npp", "0", "-nps", "0", "--disable_tta")


def read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_stock_predict_and_missing_modalities_with_both_protocols(trained, datasets, run_command, tmp_path):
    raw = datasets[LABELS_ID][0]
    model = ("-d", str(LABELS_ID), "-c", "3d_tiny", "-f", "0", "-tr", SMOKE)
    predict(run_command, "nnUNetv2_predict", "-i", str(raw / "imagesTs"), "-o", str(tmp_path / "stock"), *model)
    predict(run_command, *NNUNET_EXT, "predict", "-i", str(raw / "imagesTs"), "-o", str(tmp_path / "all"), *model)
    for protocol in ("joint", "branches"):
        result = predict(run_command, *NNUNET_EXT, "predict", "-i", str(raw / "imagesTs"), "-o",
                         str(tmp_path / protocol), *model, "--missing", "MR2", "--protocol", protocol)
        assert "2 case(s) predicted without MR2" in result.stdout
    cases = sorted(p.name for p in (tmp_path / "stock").glob("*.nii.gz"))
    assert len(cases) == 2
    for case in cases:
        assert np.array_equal(read(tmp_path / "stock" / case), read(tmp_path / "all" / case)), \
            "with every channel, nnunet_ext predict is nnUNetv2_predict"
        for protocol in ("joint", "branches"):
            assert read(tmp_path / protocol / case).shape == read(tmp_path / "stock" / case).shape
    mixed = tmp_path / "mixed_input"
    shutil.copytree(raw / "imagesTs", mixed)
    case = cases[0][:-len(".nii.gz")]
    (mixed / f"{case}_0001.nii.gz").unlink()
    result = predict(run_command, *NNUNET_EXT, "predict", "-i", str(mixed), "-o", str(tmp_path / "mixed"), *model)
    assert "1 case(s) predicted without MR2" in result.stdout
    assert "1 case(s) predicted with every channel" in result.stdout
    assert np.array_equal(read(tmp_path / "mixed" / cases[0]), read(tmp_path / "joint" / cases[0]))
    assert np.array_equal(read(tmp_path / "mixed" / cases[1]), read(tmp_path / "all" / cases[1]))


def test_evaluate_missing_tabulates_every_subset_for_maml_and_stock(trained, datasets, run_command, tmp_path):
    raw = datasets[REGIONS_ID][0]
    out = tmp_path / "maml"
    predict(run_command, *NNUNET_EXT, "evaluate_missing", "-d", str(REGIONS_ID), "-c", "2d_tiny", "-f", "0", "-tr",
            SMOKE, "-i", str(raw / "imagesTs"), "-ref", str(raw / "labelsTs"), "-o", str(out), "--protocol", "joint",
            "branches")
    table = json.loads((out / "missing_modalities.json").read_text())
    assert table["classes"] == ["whole", "core"] and table["channels"] == ["MR1", "MR2", "MR3", "MR4"]
    assert [row["protocol"] for row in table["rows"]] == ["joint"] * 15 + ["branches"] * 15
    assert len({tuple(row["present"]) for row in table["rows"]}) == 15
    assert (out / "missing_modalities.png").stat().st_size > 0
    assert len((out / "missing_modalities.csv").read_text().splitlines()) == 31
    row = next(r for r in table["rows"] if r["protocol"] == "branches" and r["present"] == ["MR1", "MR3"])
    summary = tmp_path / "check.json"
    run_command(*NNUNET_EXT, "evaluate", str(raw / "labelsTs"), str(out / "branches" / "MR1_MR3"), "-o", str(summary),
                "--regions-from", str(raw / "dataset.json"))
    checked = json.loads(summary.read_text())
    assert row["dice"]["whole"] == pytest.approx(checked["mean"]["(1, 2)"]["Dice"])
    assert row["dice"]["core"] == pytest.approx(checked["mean"][str((2,))]["Dice"])

    labels_raw = datasets[LABELS_ID][0]
    stock = tmp_path / "stock"
    predict(run_command, *NNUNET_EXT, "evaluate_missing", "-d", str(LABELS_ID), "-c", "3d_tiny", "-f", "0", "-tr",
            STOCK_SMOKE, "-i", str(labels_raw / "imagesTs"), "-ref", str(labels_raw / "labelsTs"), "-o", str(stock))
    stock_table = json.loads((stock / "missing_modalities.json").read_text())
    assert [row["protocol"] for row in stock_table["rows"]] == ["zero-filled"] * 7
    assert stock_table["classes"] == ["organ", "core"]


def test_benchmark_measures_maml_against_stock_on_the_same_plans(datasets):
    from nnunet_ext.benchmark import benchmark
    results = benchmark(str(LABELS_ID), "3d_tiny", "nnUNetPlans", ["nnUNetTrainerMAML"], "0", warmup=3, steps=5,
                        inference_repeats=1, device=torch.device("cpu"))
    maml = results["trainers"]["nnUNetTrainerMAML"]
    assert maml["total_batch"] == results["labeled_batch"] == 2
    assert maml["ratio_same_labeled_batch"] == pytest.approx(
        maml["step_s_median"] / results["stock"]["same_labeled_batch"]["step_s_median"])
    assert maml["memory_ratio_same_labeled_batch"] > 0 and maml["inference_ratio"] > 0
