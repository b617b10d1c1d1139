"""CMC end to end on synthetic unpaired "CT" and "MR" datasets (different patients, spacing, size, orientation and
intensities): joint planning, the loss terms against hand computations, gradients of both unsupervised terms into
the shared encoder, the streams, ``nnUNetv2_train`` / ``--c``, the partner's results folder with its own
normalisation, stock ``nnUNetv2_predict`` on both test sets, ``find_best_configuration`` and evaluation."""
import importlib
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TEST_TRAINERS, add_tiny_configuration, resumed_trainer, start_trainer
from nnunet_ext.cli import main as nnunet_ext
from nnunet_ext.environment import ext_trainer_path_with_shim
from nnunet_ext.dataset_conversion.synthetic import write_synthetic_partner_datasets
from nnunet_ext.losses.cross_modality import channel_contrastive_loss, soft_dice_disagreement
from nnunet_ext.trainers import nnUNetTrainerCMC
from nnunet_ext.training.term_logger import checkpoint_method_state

CT_ID, MR_ID = 985, 986
NNUNET_EXT = (sys.executable, "-m", "nnunet_ext.cli")
SMOKE = "nnUNetTrainerCMC_smoke"
TERMS = ("loss_supervised_primary", "loss_supervised_partner", "loss_csc", "loss_cac", "weight_csc", "weight_cac")


# ----------------------------------------------------------------------------------------------------------------
# the two unsupervised terms against hand computations
# ----------------------------------------------------------------------------------------------------------------

def hand_csc(f_a: np.ndarray, f_b: np.ndarray, tau: float) -> float:
    """NT-Xent with the channels as instances, written out term by term."""
    losses = []
    for a, b in zip(f_a, f_b):
        instances = [v / np.linalg.norm(v) for v in list(a.reshape(a.shape[0], -1)) + list(b.reshape(b.shape[0], -1))]
        c = a.shape[0]
        for i in range(2 * c):
            positive = (i + c) % (2 * c)
            denominator = sum(math.exp(instances[i] @ instances[k] / tau) for k in range(2 * c) if k != i)
            losses.append(-math.log(math.exp(instances[i] @ instances[positive] / tau) / denominator))
    return float(np.mean(losses))


def test_csc_is_nt_xent_over_channels():
    rng = np.random.default_rng(0)
    f_a, f_b = rng.normal(size=(2, 5, 3, 4, 2)), rng.normal(size=(2, 5, 3, 4, 2))
    got = channel_contrastive_loss(torch.tensor(f_a), torch.tensor(f_b), temperature=0.5)
    assert float(got) == pytest.approx(hand_csc(f_a, f_b, 0.5), rel=1e-5)
    same = float(channel_contrastive_loss(torch.tensor(f_a), torch.tensor(f_a)))
    swapped = float(channel_contrastive_loss(torch.tensor(f_a), torch.tensor(f_a[:, ::-1].copy())))
    assert same < swapped, "the positive of a channel is the same channel of the other modality"


def test_sorted_csc_compares_activation_distributions_wherever_they_lie():
    rng = np.random.default_rng(2)
    f_a, f_b = torch.tensor(rng.normal(size=(2, 4, 6, 5))), torch.tensor(rng.normal(size=(2, 4, 6, 5)))
    by_hand = channel_contrastive_loss(f_a.flatten(2).sort(-1).values, f_b.flatten(2).sort(-1).values)
    assert float(channel_contrastive_loss(f_a, f_b, sort_values=True)) == pytest.approx(float(by_hand), rel=1e-6)
    moved = torch.roll(f_b, shifts=(2, 3), dims=(2, 3))
    assert float(channel_contrastive_loss(f_a, moved, sort_values=True)) == pytest.approx(
        float(channel_contrastive_loss(f_a, f_b, sort_values=True)), rel=1e-6)
    assert float(channel_contrastive_loss(f_a, moved)) != pytest.approx(float(channel_contrastive_loss(f_a, f_b)))


def test_cac_is_one_minus_the_soft_dice_of_probabilities():
    rng = np.random.default_rng(1)
    p, q = (torch.softmax(torch.tensor(rng.normal(size=(2, 3, 4, 5))), 1) for _ in range(2))
    dice = [(2 * (p[b, c] * q[b, c]).sum() + 1e-6) / ((p[b, c] ** 2).sum() + (q[b, c] ** 2).sum() + 1e-6)
            for b in range(2) for c in range(3)]
    assert float(soft_dice_disagreement(p, q)) == pytest.approx(1 - float(np.mean(dice)), rel=1e-6)
    assert float(soft_dice_disagreement(p, p)) < float(soft_dice_disagreement(p, q))


# ----------------------------------------------------------------------------------------------------------------
# joint planning
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def partners(nnunet_folders):
    """Both raw datasets, planned jointly, 2d and 3d_fullres preprocessed, a tiny 3-D configuration in both plans."""
    raw = Path(nnunet_folders["nnUNet_raw"])
    write_synthetic_partner_datasets(CT_ID, MR_ID, raw_root=str(raw))
    nnunet_ext(["plan_and_preprocess", "-d", str(CT_ID), str(MR_ID), "--joint", "-c", "2d", "3d_fullres",
                "-np", "2", "-npfp", "2"])
    folders = {}
    for dataset_id in (CT_ID, MR_ID):
        name = next(raw.glob(f"Dataset{dataset_id}_*")).name
        folder = Path(nnunet_folders["nnUNet_preprocessed"]) / name
        add_tiny_configuration(str(folder / "nnUNetPlans.json"), features=(8, 16, 32), patch_size=(16, 16, 16))
        folders[dataset_id] = folder
    return folders


def load(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


def test_joint_plans_share_the_network_and_keep_their_own_normalisation(partners):
    ct, mr = (load(partners[i], "nnUNetPlans.json") for i in (CT_ID, MR_ID))
    assert ct["nnunet_ext_joint"] == mr["nnunet_ext_joint"] == {"primary": partners[CT_ID].name,
                                                                "partner": partners[MR_ID].name}
    assert (ct["dataset_name"], mr["dataset_name"]) == (partners[CT_ID].name, partners[MR_ID].name)
    for configuration in ("2d", "3d_fullres"):
        a, b = ct["configurations"][configuration], mr["configurations"][configuration]
        for key in ("spacing", "patch_size", "batch_size", "architecture"):
            assert a[key] == b[key], (configuration, key)
        assert (a["normalization_schemes"], b["normalization_schemes"]) == (["CTNormalization"],
                                                                            ["ZScoreNormalization"])
    for plans, folder in ((ct, partners[CT_ID]), (mr, partners[MR_ID])):
        own = load(folder, "dataset_fingerprint.json")["foreground_intensity_properties_per_channel"]
        assert plans["foreground_intensity_properties_per_channel"] == own
    spacings = [s for i in (CT_ID, MR_ID) for s in load(partners[i], "dataset_fingerprint.json")["spacings"]]
    assert min(min(s) for s in spacings) <= min(ct["configurations"]["3d_fullres"]["spacing"]), "one spacing for both"
    for i in (CT_ID, MR_ID):
        assert (partners[i] / "nnUNetPlans_2d_unlabeled").is_dir()
        assert len(list((partners[i] / "nnUNetPlans_2d").glob("*.b2nd"))) == 2 * 6


def test_joint_planning_refuses_datasets_that_cannot_train_one_model(partners, nnunet_folders):
    raw = Path(nnunet_folders["nnUNet_raw"])
    mr_json = raw / partners[MR_ID].name / "dataset.json"
    original = mr_json.read_text()
    try:
        changed = json.loads(original)
        changed["labels"]["tumour"] = 2
        mr_json.write_text(json.dumps(changed))
        with pytest.raises(ValueError, match="labels differ"):
            nnunet_ext(["plan_and_preprocess", "-d", str(CT_ID), str(MR_ID), "--joint", "--no_pp"])
        changed = json.loads(original)
        changed["nnunet_ext_partner"] = "Dataset123_Other"
        mr_json.write_text(json.dumps(changed))
        with pytest.raises(ValueError, match="names 'Dataset123_Other' as its partner"):
            nnunet_ext(["plan_and_preprocess", "-d", str(CT_ID), str(MR_ID), "--joint", "--no_pp"])
    finally:
        mr_json.write_text(original)
    with pytest.raises(ValueError, match="--joint plans two partner datasets"):
        nnunet_ext(["plan_and_preprocess", "-d", str(CT_ID), "--joint"])


def test_partners_need_one_channel_count_and_a_planned_partner():
    from nnunet_ext.partners import label_set_problems, partner_of
    labels = {"background": 0, "organ": 1}
    problems = label_set_problems(("A", "B"), ({"labels": labels, "channel_names": {"0": "CT"}},
                                               {"labels": labels, "channel_names": {"0": "T1", "1": "T2"}}))
    assert problems == ["their channel counts differ (A: 1; B: 2)"]
    plans = {"dataset_name": "Dataset990_A", "plans_name": "nnUNetPlans",
             "nnunet_ext_joint": {"primary": "Dataset990_A", "partner": "Dataset991_NotPlanned"}}
    with pytest.raises(FileNotFoundError, match="partner Dataset991_NotPlanned of Dataset990_A has no plans"):
        partner_of(plans, {"labels": labels}, "2d")
    with pytest.raises(ValueError, match="were not planned jointly"):
        partner_of({"dataset_name": "Dataset990_A", "plans_name": "nnUNetPlans"}, {"labels": labels}, "2d")


# ----------------------------------------------------------------------------------------------------------------
# the trainer, in this process
# ----------------------------------------------------------------------------------------------------------------

def trainer_on(partners, dataset_id: int, configuration: str = "3d_tiny", **attributes) -> nnUNetTrainerCMC:
    folder = partners[dataset_id]
    return start_trainer(nnUNetTrainerCMC, load(folder, "nnUNetPlans.json"), load(folder, "dataset.json"),
                         configuration, **attributes)


def finish(trainer) -> None:
    for stream in trainer.streams.values():
        stream.finish()


def test_started_on_the_partner_it_refuses_naming_the_primary(partners):
    with pytest.raises(ValueError, match=f"{partners[MR_ID].name} is the partner of {partners[CT_ID].name}"):
        trainer_on(partners, MR_ID, start_loaders=False)


def test_plans_that_disagree_with_the_partners_are_refused(partners):
    folder = partners[CT_ID]
    plans = load(folder, "nnUNetPlans.json")
    plans["configurations"]["3d_tiny"]["patch_size"] = [24, 24, 24]
    with pytest.raises(ValueError, match="disagree in 3d_tiny.patch_size"):
        start_trainer(nnUNetTrainerCMC, plans, load(folder, "dataset.json"), "3d_tiny", start_loaders=False)


def test_streams_read_each_datasets_own_cases_and_never_an_unlabeled_label(partners):
    trainer = trainer_on(partners, CT_ID)
    try:
        partner_training = set(trainer.partner_view.do_split()[0])
        unlabeled = {name: set(os.listdir(trainer.streams[name].spec.folder)) for name in
                     ("unlabeled", "partner_unlabeled")}
        for _ in range(3):
            batches = trainer.next_batches(next(trainer.dataloader_train))
            assert set(batches["partner_labeled"]["keys"]) <= partner_training
            assert all(k.startswith("mri_") for k in batches["partner_labeled"]["keys"])
            for name, files in unlabeled.items():
                assert "target" not in batches[name]
                assert all(f"{k}.b2nd" in files for k in batches[name]["keys"])
        assert trainer.streams["unlabeled"].spec.folder.endswith("_unlabeled")
        assert trainer.streams["partner_unlabeled"].spec.folder.startswith(str(partners[MR_ID]))
    finally:
        finish(trainer)


def test_loss_terms_compose_and_both_unsupervised_terms_reach_the_shared_encoder(partners):
    trainer = trainer_on(partners, CT_ID, unsupervised_start=0.0)
    try:
        trainer.optimizer_steps = trainer.num_epochs * trainer.num_iterations_per_epoch // 2
        batches = trainer.next_batches(next(trainer.dataloader_train))
        terms = trainer.compute_terms(batches)
        weights = trainer.unsupervised_weights()
        assert weights["weight_csc"] == pytest.approx(math.exp(-5 * 0.25))
        assert weights["weight_cac"] == pytest.approx(0.5)
        expected = 0.5 * (terms["loss_supervised_primary"] + terms["loss_supervised_partner"]) + \
            weights["weight_csc"] * terms["loss_csc"] + weights["weight_cac"] * terms["loss_cac"]
        assert float(terms["loss"].detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
        encoder = [p for p in trainer.student.encoder.parameters()]
        for name in ("loss_csc", "loss_cac"):
            assert float(terms[name]) > 0, name
            gradients = torch.autograd.grad(terms[name], encoder, retain_graph=True, allow_unused=True)
            assert sum(float(g.abs().sum()) for g in gradients if g is not None) > 0, name
    finally:
        finish(trainer)


def test_csc_on_all_pairs_and_cac_as_mse(partners, monkeypatch):
    module = importlib.import_module("nnunet_ext.trainers.nnUNetTrainerCMC")
    seen = {}

    def recording(name, function):
        def record(a, b, *args):
            seen[name] = (a.shape[0], function(a, b, *args))
            return seen[name][1]
        return record

    monkeypatch.setattr(module, "channel_contrastive_loss", recording("csc", channel_contrastive_loss))
    monkeypatch.setattr(module, "mean_squared_error", recording("cac", module.mean_squared_error))
    trainer = trainer_on(partners, CT_ID, unsupervised_start=0.0, csc_on="all", cac_distance="mse")
    try:
        terms = trainer.compute_terms(trainer.next_batches(next(trainer.dataloader_train)))
        assert seen["csc"][0] == 2 * trainer.batch_size, "labeled and unlabeled pairs"
        assert seen["cac"][0] == trainer.batch_size, "unlabeled pairs only"
        assert float(terms["loss_cac"]) == float(seen["cac"][1]) > 0
    finally:
        finish(trainer)
    with pytest.raises(ValueError, match="cac_distance must be one of"):
        trainer_on(partners, CT_ID, start_loaders=False, cac_distance="l1")


def test_before_the_start_only_the_supervised_terms_are_computed(partners):
    trainer = trainer_on(partners, CT_ID)
    try:
        terms = trainer.compute_terms(trainer.next_batches(next(trainer.dataloader_train)))
        assert set(terms) == {"loss", "loss_supervised_primary", "loss_supervised_partner"}
    finally:
        finish(trainer)


def test_self_pairing_is_the_inference_output_and_does_not_depend_on_the_batch(partners):
    trainer = trainer_on(partners, CT_ID, start_loaders=False)
    network = trainer.student.eval()
    trainer.set_deep_supervision_enabled(False)
    x = torch.randn(3, 1, 16, 16, 16)
    with torch.no_grad():
        alone = network(x[:1])
        in_batch = network(x)
        paired = network(x, torch.randn(3, 1, 16, 16, 16), torch.tensor([True, False, False]))
    assert torch.allclose(alone[0], in_batch[0], atol=1e-5)
    assert torch.allclose(paired[2][0], in_batch[0], atol=1e-5), "a self-paired patch is segmented as at inference"
    assert not torch.allclose(paired[2][1], in_batch[1], atol=1e-5), "a real pair uses its partner"


# ----------------------------------------------------------------------------------------------------------------
# as a user types it
# ----------------------------------------------------------------------------------------------------------------

def results(nnunet_folders, folder: Path, configuration: str = "2d") -> Path:
    return Path(nnunet_folders["nnUNet_results"]) / folder.name / f"{SMOKE}__nnUNetPlans__{configuration}"


@pytest.fixture(scope="module")
def trained(partners, nnunet_folders, run_command):
    run_command("nnUNetv2_train", str(CT_ID), "2d", "0", "-tr", SMOKE, "-device", "cpu")
    return {i: results(nnunet_folders, partners[i]) for i in (CT_ID, MR_ID)}


def test_training_logs_every_term_and_writes_the_partners_results_folder(trained, partners):
    checkpoint = torch.load(trained[CT_ID] / "fold_0" / "checkpoint_final.pth", map_location="cpu",
                            weights_only=False)
    assert checkpoint_method_state(checkpoint)["optimizer_steps"] == 6
    for term in TERMS:
        assert len(checkpoint["logging"][term]) == 2, term
    for term in ("loss_csc", "loss_cac"):
        first, second = checkpoint["logging"][term]
        assert math.isnan(first) and second > 0, "the unsupervised terms start at 0.7 of training"
    partner_checkpoint = torch.load(trained[MR_ID] / "fold_0" / "checkpoint_final.pth", map_location="cpu",
                                    weights_only=False)
    assert partner_checkpoint["init_args"]["plans"]["dataset_name"] == partners[MR_ID].name
    for key, value in checkpoint["network_weights"].items():
        assert torch.equal(partner_checkpoint["network_weights"][key], value)
    for i in (CT_ID, MR_ID):
        assert load(trained[i], "plans.json") == load(partners[i], "nnUNetPlans.json")
        assert load(trained[i], "dataset.json")["labels"] == {"background": 0, "organ": 1}
        for name in ("progress.png", "validation/summary.json"):
            assert (trained[i] / "fold_0" / name).is_file(), (i, name)
        assert not (trained[i] / "fold_0" / "checkpoint_latest.pth").exists()
        assert not os.path.islink(trained[i])
    validated = load(trained[MR_ID] / "fold_0" / "validation", "summary.json")
    assert {case["prediction_file"].split("/")[-1][:4] for case in validated["metric_per_case"]} == {"mri_"}


def test_the_partners_folder_predicts_with_the_partners_normalisation(trained, partners, nnunet_folders, monkeypatch):
    """The stock predictor loaded from the partner's folder preprocesses an MR image exactly as the partner's
    preprocessed training data; with the primary's (CT) plans it would not."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    monkeypatch.setenv("nnUNet_extTrainer", ext_trainer_path_with_shim(TEST_TRAINERS))
    predictor = nnUNetPredictor(device=torch.device("cpu"))
    predictor.initialize_from_trained_model_folder(str(trained[MR_ID]), (0,))
    raw = Path(nnunet_folders["nnUNet_raw"]) / partners[MR_ID].name
    case = "mri_000"
    files = [str(raw / "imagesTr" / f"{case}_0000.nii.gz")]
    preprocessor = predictor.configuration_manager.preprocessor_class(verbose=False)
    data, _, _ = preprocessor.run_case(files, None, predictor.plans_manager, predictor.configuration_manager,
                                       predictor.dataset_json)
    folder = str(partners[MR_ID] / "nnUNetPlans_2d")
    stored = np.asarray(infer_dataset_class(folder)(folder, [case]).load_case(case)[0][:])
    assert np.allclose(data, stored, atol=1e-4)
    ct_plans = PlansManager(str(trained[CT_ID] / "plans.json"))
    as_ct, _, _ = preprocessor.run_case(files, None, ct_plans, ct_plans.get_configuration("2d"),
                                        predictor.dataset_json)
    assert not np.allclose(as_ct, stored, atol=1e-2)


def test_stock_predict_evaluate_and_model_tools_work_on_both(trained, partners, nnunet_folders, run_command,
                                                             tmp_path):
    raw = Path(nnunet_folders["nnUNet_raw"])
    for dataset_id in (CT_ID, MR_ID):
        source = raw / partners[dataset_id].name
        prediction = tmp_path / f"pred{dataset_id}"
        run_command("nnUNetv2_predict", "-i", str(source / "imagesTs"), "-o", str(prediction), "-d", str(dataset_id),
                    "-c", "2d", "-f", "0", "-tr", SMOKE, "-device", "cpu", "-npp", "0", "-nps", "0",
                    "--disable_tta")
        assert len(list(prediction.glob("*.nii.gz"))) == 2
        run_command(*NNUNET_EXT, "evaluate", str(source / "labelsTs"), str(prediction), "-o",
                    str(tmp_path / f"summary{dataset_id}.json"))
        summary = json.loads((tmp_path / f"summary{dataset_id}.json").read_text())
        assert 0 <= summary["mean"]["1"]["Dice"] <= 1
        run_command("nnUNetv2_find_best_configuration", str(dataset_id), "-c", "2d", "-tr", SMOKE, "-f", "0")
        run_command("nnUNetv2_export_model_to_zip", "-d", str(dataset_id), "-o", str(tmp_path / f"{dataset_id}.zip"),
                    "-c", "2d", "-tr", SMOKE, "-f", "0")
        assert (tmp_path / f"{dataset_id}.zip").stat().st_size > 0


def test_resume_restores_the_method_state(trained, partners):
    trainer, saved = resumed_trainer(nnUNetTrainerCMC, trained[CT_ID] / "fold_0" / "checkpoint_final.pth")
    assert trainer.optimizer_steps == checkpoint_method_state(saved)["optimizer_steps"] == 6
    for key, value in trainer.student.state_dict().items():
        assert torch.equal(value, saved["network_weights"][key]), key
    assert trainer.partner_view.plans_manager.dataset_name == partners[MR_ID].name


def test_benchmark_compares_cmc_with_the_two_stock_trainers_it_replaces(partners):
    from nnunet_ext.benchmark import benchmark
    results = benchmark(str(CT_ID), "3d_tiny", "nnUNetPlans", ["nnUNetTrainerCMC"], "0", warmup=3, steps=5,
                        inference_repeats=1, device=torch.device("cpu"))
    cmc = results["trainers"]["nnUNetTrainerCMC"]
    assert cmc["total_batch"] == 8
    two = cmc["stock_two_modalities"]
    assert two["primary"]["total_batch"] == two["partner"]["total_batch"] == 4
    seconds = two["primary"]["step_s_median"] + two["partner"]["step_s_median"]
    assert cmc["ratio_two_stock_modalities"] == pytest.approx(cmc["step_s_median"] / seconds)
    assert cmc["memory_ratio_two_stock_modalities"] > 0 and cmc["inference_ratio"] > 0
