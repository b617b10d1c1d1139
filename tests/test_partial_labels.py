"""Partial labels on synthetic single-structure datasets: ``make_partial_union`` (relabelling, one orientation,
``annotated_labels``, what came from where, refusals), the marginal logits and loss against hand computations,
``nnUNetTrainerMarginal`` as a user runs it (train → validation on annotated classes → stock predict → evaluate
on each case's annotated classes), and LTUDA's parts against hand computations (pBCE, CutMix, Sinkhorn, the
threshold rule, the masked pseudo-label) and end to end through its stage switch (``--c`` state, banks in the
weights, stock predict, ``nnunet_ext predict --classifier``)."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch.nn import functional as F

from conftest import add_tiny_configuration, resumed_trainer, start_trainer, with_first_voxel
from nnunet_ext.cli import main as nnunet_ext
from nnunet_ext.dataset_conversion.partial_union import make_partial_union
from nnunet_ext.dataset_conversion.synthetic import write_synthetic_single_structure_datasets
from nnunet_ext.losses.partial_labels import marginal_logits, partial_bce, partial_soft_dice, partial_targets
from nnunet_ext.networks.prototype_unet import PrototypeUNet, threshold_rule_logits
from nnunet_ext.trainers import nnUNetTrainerLTUDA, nnUNetTrainerLTUDA_paper, nnUNetTrainerMarginal
from nnunet_ext.training.cutmix import cutmix, random_keep_masks
from nnunet_ext.training.prototypes import IGNORE, seed_unseen_classes, sinkhorn
from nnunet_ext.training.term_logger import checkpoint_method_state

LIVER_ID, SPLEEN_ID, UNION_ID = 952, 953, 954
SMOKE, LTUDA_SMOKE = "nnUNetTrainerMarginal_smoke", "nnUNetTrainerLTUDA_smoke"
NNUNET_EXT = (sys.executable, "-m", "nnunet_ext.cli")


def test_marginal_logits_merge_the_unannotated_classes_into_background():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 3)
    annotated = torch.tensor([[True, True, False, False], [True, False, True, True]])
    p, merged = logits.softmax(1), marginal_logits(logits, annotated).softmax(1)
    assert torch.allclose(merged[0, 0], p[0, 0] + p[0, 2] + p[0, 3], atol=1e-6)
    assert torch.allclose(merged[0, 1], p[0, 1], atol=1e-6)
    assert torch.allclose(merged[1, 0], p[1, 0] + p[1, 1], atol=1e-6)
    assert float(merged[0, 2:].max()) == 0 and float(merged[1, 1].max()) == 0
    full = torch.ones(2, 4, dtype=torch.bool)
    assert torch.allclose(marginal_logits(logits, full).softmax(1), p, atol=1e-6), "fully annotated: unchanged"
    assert len(marginal_logits([logits, logits[..., :1, :1]], annotated)) == 2


@pytest.fixture(scope="module")
def union(nnunet_folders):
    raw = Path(nnunet_folders["nnUNet_raw"])
    write_synthetic_single_structure_datasets(LIVER_ID, ("liver", "spleen"), raw_root=str(raw))
    folder = Path(make_partial_union([f"{LIVER_ID}:liver", f"{SPLEEN_ID}:Spleen"], str(UNION_ID),
                                     raw_root=str(raw)))
    nnunet_ext(["plan_and_preprocess", "-d", str(UNION_ID), "-c", "3d_fullres", "-np", "2", "-npfp", "2"])
    preprocessed = Path(nnunet_folders["nnUNet_preprocessed"]) / folder.name
    add_tiny_configuration(str(preprocessed / "nnUNetPlans.json"), features=(8, 16, 32), patch_size=(16, 16, 16))
    return folder, preprocessed


def read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_the_union_relabels_reorients_and_records_what_came_from_where(union, nnunet_folders):
    folder, _ = union
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "liver": 1, "spleen": 2}
    assert dataset_json["annotated_labels"]["liver_000"] == [1] and dataset_json["annotated_labels"]["spleen_005"] == [2]
    assert len(dataset_json["annotated_labels"]) == 12, "training and test cases"
    assert dataset_json["numTraining"] == 8 and len(list((folder / "labelsTs").glob("*.nii.gz"))) == 4
    sources = dataset_json["partial_union"]["sources"]
    assert sources["Dataset953_SynthSpleen"] == {"structure": "spleen", "source_label": 1, "union_label": 2,
                                                 "training": 4, "test": 2, "unlabeled": 0}
    assert dataset_json["partial_union"]["case_sources"]["spleen_001"] == "Dataset953_SynthSpleen"
    spleen_source = Path(nnunet_folders["nnUNet_raw"]) / "Dataset953_SynthSpleen"
    label = sitk.ReadImage(str(folder / "labelsTr" / "spleen_001.nii.gz"))
    assert np.allclose(label.GetDirection(), np.eye(3).ravel()), "one orientation (LPS)"
    assert np.array_equal(sitk.GetArrayFromImage(label),
                          2 * np.flip(read(spleen_source / "labelsTr" / "spleen_001.nii.gz"), axis=2))
    image = read(folder / "imagesTr" / "spleen_001_0000.nii.gz")
    liver_image = read(folder / "imagesTr" / "liver_001_0000.nii.gz")
    spleen_side = slice(20, None)
    assert image[..., spleen_side].mean() > image[..., :12].mean() and \
        liver_image[..., spleen_side].mean() > liver_image[..., :12].mean(), "both sources show the anatomy alike"


def test_the_union_refuses_what_it_cannot_join(union, nnunet_folders, tmp_path):
    raw = Path(nnunet_folders["nnUNet_raw"])
    with pytest.raises(ValueError, match="has no label 'kidney'"):
        make_partial_union([f"{LIVER_ID}:kidney"], "955", raw_root=str(raw))
    with pytest.raises(ValueError, match="case id liver_000 is in two sources"):
        make_partial_union([f"{LIVER_ID}:liver", f"{UNION_ID}:liver"], "955", raw_root=str(raw))
    write_synthetic_single_structure_datasets(956, ("cyst",), num_training=1, num_test=0, raw_root=str(tmp_path))
    with pytest.raises(ValueError, match=r"--label-set ltuda has the structures .*\['cyst'\] is not one of them"):
        make_partial_union([f"{LIVER_ID}:liver", str(tmp_path / "Dataset956_SynthCyst") + ":cyst"], "955",
                           label_set="ltuda", raw_root=str(raw))
    bad = tmp_path / "Dataset957_Bad"
    shutil.copytree(raw / "Dataset952_SynthLiver", bad)
    with_first_voxel(bad / "labelsTr" / "liver_002.nii.gz", 3)
    with pytest.raises(ValueError, match=r"liver_002.nii.gz: label values \[3\] are not declared"):
        make_partial_union([f"{bad}:liver"], "955", raw_root=str(raw))
    dataset_json = json.loads((bad / "dataset.json").read_text())
    dataset_json["channel_names"] = {"0": "CT", "1": "PET"}
    (bad / "dataset.json").write_text(json.dumps(dataset_json))
    with pytest.raises(ValueError, match="different channel counts"):
        make_partial_union([f"{SPLEEN_ID}:spleen", f"{bad}:liver"], "955", raw_root=str(raw))
    assert not any(raw.glob("Dataset955_*")), "nothing half-written"


def test_the_ct_window_planner_maps_ltudas_window_onto_minus_one_to_one(union):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    folder, preprocessed = union
    nnunet_ext(["plan_and_preprocess", "-d", str(UNION_ID), "-pl", "nnUNetPlannerCTWindow", "-c", "3d_fullres",
                "-np", "1", "-npfp", "1"])
    plans = json.loads((preprocessed / "nnUNetPlansCTWindow.json").read_text())
    window = plans["foreground_intensity_properties_per_channel"]["0"]
    assert [window[k] for k in ("percentile_00_5", "percentile_99_5", "mean", "std")] == [-325, 325, 0, 325]
    assert plans["configurations"]["3d_fullres"]["normalization_schemes"] == ["CTNormalization"]
    stock = json.loads((preprocessed / "nnUNetPlans.json").read_text())["foreground_intensity_properties_per_channel"]
    assert stock["0"]["percentile_99_5"] < 325, "nnU-Net's own plans keep the measured percentiles"
    cases_folder = str(preprocessed / "nnUNetPlansCTWindow_3d_fullres")
    data = infer_dataset_class(cases_folder)(cases_folder).load_case("liver_000")[0][:]
    raw = read(folder / "imagesTr" / "liver_000_0000.nii.gz")
    assert data.shape[1:] == raw.shape
    np.testing.assert_allclose(data[0], np.clip(raw, -325, 325) / 325, atol=1e-5)


def test_the_marginal_loss_never_teaches_an_unannotated_class_as_background(union):
    _, preprocessed = union
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    trainer = start_trainer(nnUNetTrainerMarginal, plans, dataset_json, "3d_tiny", start_loaders=False)
    mask = trainer.annotation_mask(["liver_000", "spleen_001"])
    assert mask.tolist() == [[True, True, False], [True, False, True]]
    with pytest.raises(ValueError, match="case ghost .* has no entry in the dataset.json's annotated_labels"):
        trainer.annotation_mask(["ghost"])
    logits = torch.zeros(2, 3, 4, 4, 4, requires_grad=True)
    target = torch.zeros(2, 1, 4, 4, 4)
    target[0, :, :2] = 1
    target[1, :, :2] = 2
    loss = trainer.loss.loss
    marginal = torch.autograd.grad(loss(marginal_logits(logits, mask), target), logits)[0]
    stock = torch.autograd.grad(loss(logits, target), logits)[0]
    background = target[:, 0] == 0
    assert float(marginal[0, 2][background[0]].max()) <= 0 and float(marginal[1, 1][background[1]].max()) <= 0, \
        "the marginal loss never pushes an unannotated class down where the case says background"
    assert float(stock[0, 2][background[0]].min()) > 0, "stock nnU-Net's loss does (the baseline's flaw)"
    p = logits.detach().softmax(1)
    by_hand = -torch.log(torch.where(background[0], p[0, 0] + p[0, 2], p[0, 1])).mean()
    from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss
    ce = RobustCrossEntropyLoss()(marginal_logits(logits, mask)[:1], target[:1])
    assert float(ce.detach()) == pytest.approx(float(by_hand), rel=1e-5)


def test_marginal_trains_validates_on_annotated_classes_and_predicts(union, nnunet_folders, run_command, tmp_path):
    folder, _ = union
    run_command("nnUNetv2_train", str(UNION_ID), "3d_tiny", "0", "-tr", SMOKE, "-device", "cpu")
    results = Path(nnunet_folders["nnUNet_results"]) / folder.name / f"{SMOKE}__nnUNetPlans__3d_tiny" / "fold_0"
    summary = json.loads((results / "validation" / "summary.json").read_text())
    assert summary["metric_per_case"]
    for case in summary["metric_per_case"]:
        name = Path(case["reference_file"]).name
        assert list(case["metrics"]) == (["1"] if name.startswith("liver") else ["2"]), name
    assert (results / "progress.png").is_file()
    prediction = tmp_path / "prediction"
    run_command("nnUNetv2_predict", "-i", str(folder / "imagesTs"), "-o", str(prediction), "-d", str(UNION_ID), "-c",
                "3d_tiny", "-f", "0", "-tr", SMOKE, "-device", "cpu", "-npp", "0", "-nps", "0", "--disable_tta")
    assert len(list(prediction.glob("*.nii.gz"))) == 4
    run_command(*NNUNET_EXT, "evaluate", str(folder / "labelsTs"), str(prediction), "-o", str(tmp_path / "s.json"),
                "--annotated-labels-from", str(folder / "dataset.json"))
    scored = json.loads((tmp_path / "s.json").read_text())
    assert scored["mean"]["1"]["n_cases"] == 2 and scored["mean"]["2"]["n_cases"] == 2


# ----------------------------------------------------------------------------------------------------------------
# LTUDA
# ----------------------------------------------------------------------------------------------------------------

def test_partial_bce_averages_over_the_known_entries_only():
    torch.manual_seed(1)
    logits, targets = torch.randn(2, 3, 4, 4), (torch.rand(2, 3, 4, 4) > 0.5).float()
    valid = torch.zeros(2, 3, 4, 4, dtype=torch.bool)
    valid[0, 0], valid[1, 0, :2], valid[1, 2] = True, True, True
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    by_hand = (bce[:, 0][valid[:, 0]].mean() + bce[:, 2][valid[:, 2]].mean()) / 2
    assert float(partial_bce(logits, targets, valid)) == pytest.approx(float(by_hand), rel=1e-6)
    assert float(partial_bce(logits, targets, torch.zeros_like(valid))) == 0


def test_partial_soft_dice_is_the_batch_dice_of_each_known_channel():
    torch.manual_seed(1)
    logits, targets = torch.randn(2, 3, 4, 4), (torch.rand(2, 3, 4, 4) > 0.5).float()
    valid = torch.zeros(2, 3, 4, 4, dtype=torch.bool)
    valid[0, 0], valid[1, 0, :2], valid[1, 2] = True, True, True
    p = torch.sigmoid(logits)

    def one_minus_dice(c: int) -> torch.Tensor:
        known = valid[:, c]
        pc, tc = p[:, c][known], targets[:, c][known]
        return 1 - (2 * (pc * tc).sum() + 1e-5) / (pc.sum() + tc.sum() + 1e-5)

    by_hand = (one_minus_dice(0) + one_minus_dice(2)) / 2
    assert float(partial_soft_dice(logits, targets, valid)) == pytest.approx(float(by_hand), rel=1e-6)
    assert float(partial_soft_dice(logits, targets, torch.zeros_like(valid))) == 0
    perfect = torch.where(targets > 0, 30.0, -30.0)
    assert float(partial_soft_dice(perfect, targets, valid)) == pytest.approx(0, abs=1e-6)


def test_cutmix_pastes_one_box_of_the_next_sample_into_images_annotations_and_pseudo_labels():
    torch.manual_seed(2)
    keep = random_keep_masks(4, (20, 30), torch.device("cpu"))
    pasted = 1 - keep.mean((1, 2, 3))
    assert bool((pasted > 0).all()) and bool((pasted <= 0.45).all())
    images, labels = torch.randn(4, 1, 20, 30), torch.randint(0, 3, (4, 1, 20, 30))
    mixed_images, mixed_labels = cutmix(images, keep), cutmix(labels, keep)
    inside = keep == 0
    assert torch.equal(mixed_images[inside], torch.roll(images, -1, 0)[inside])
    assert torch.equal(mixed_labels[inside], torch.roll(labels, -1, 0)[inside])
    assert torch.equal(mixed_labels[~inside], labels[~inside]) and mixed_labels.dtype == labels.dtype


def test_sinkhorn_balances_pixels_over_prototypes():
    torch.manual_seed(3)
    scores = torch.rand(60, 5) * 0.2
    assignment = sinkhorn(scores, iterations=20)
    assert torch.allclose(assignment.sum(1), torch.ones(60), atol=1e-5), "each pixel's row sums to one"
    assert torch.allclose(assignment.sum(0), torch.full((5,), 12.0), rtol=0.02), "each prototype gets N / M"


def test_prototypes_are_seeded_once_from_embeddings_of_their_own_class():
    torch.manual_seed(4)
    embeddings = F.normalize(torch.randn(40, 6), dim=1)
    mask = torch.full((40,), IGNORE)
    mask[:10], mask[10:13] = 0, 2
    bank = F.normalize(torch.randn(3, 4, 6), dim=-1)
    untouched, seeded = bank[1].clone(), torch.zeros(3, dtype=torch.bool)
    seed_unseen_classes(embeddings, mask, bank, seeded)
    assert seeded.tolist() == [True, False, True]
    background = (bank[0] @ embeddings[:10].t()).isclose(torch.tensor(1.0)).nonzero()[:, 1]
    assert sorted(background.tolist()) == sorted(set(background.tolist())) and len(background) == 4, \
        "background takes four distinct background pixels"
    assert (bank[2] @ embeddings[10:13].t()).isclose(torch.tensor(1.0)).any(1).all(), "class 2 repeats its three"
    assert torch.equal(bank[1], untouched), "a class without pixels keeps its prototypes"
    seeds = bank.clone()
    mask[13:20] = 1
    seed_unseen_classes(embeddings.flip(0), mask, bank, seeded)
    assert torch.equal(bank[[0, 2]], seeds[[0, 2]]) and seeded.all(), "seeded classes are not seeded again"


def test_threshold_rule_logits_reproduce_the_linear_classifier():
    organ_logits = torch.tensor([[-1.0, -0.5, -2.0, -0.1], [0.3, 2.0, -1.0, 0.0]]).view(2, 4, 1)
    assert threshold_rule_logits(organ_logits).softmax(1).argmax(1).view(-1).tolist() == [0, 2]


def test_the_prototype_network_embeds_only_the_samples_asked_for():
    """Stage 1 asks for no embeddings and stage 2 for the strong views only; those asked for, and the logits of a
    batch split into passes, are the ones a full pass gives (instance norm: each sample on its own)."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    torch.manual_seed(0)
    unet = PlainConvUNet(1, 3, (4, 8, 16), torch.nn.Conv2d, 3, (1, 2, 2), 2, 2, (1, 1), True,
                         torch.nn.InstanceNorm2d, {"affine": True}, nonlin=torch.nn.LeakyReLU)
    network = PrototypeUNet(unet, 3, prototypes_per_class=2, embedding_dim=8).train()
    x = torch.randn(6, 1, 16, 16)
    logits, (embeddings,) = network(x)
    assert embeddings.shape == (6, 16, 16, 8), "pixel rows: channels last"
    strong_logits, strong = network(x, embedded_from=2)
    torch.testing.assert_close(strong[0], embeddings[2:])
    torch.testing.assert_close(strong_logits, logits)
    assert network(x, embedded_from=6)[1] is None
    view_logits, views = network(x, embedded_from=2, passes=3)
    torch.testing.assert_close(view_logits, logits)
    assert len(views) == 2, "the first pass has no sample to embed"
    torch.testing.assert_close(torch.cat(views), embeddings[2:])
    with pytest.raises(ValueError, match="4 equal passes"):
        network(x, passes=4)


def test_the_prototype_classifier_scores_each_class_by_its_nearest_prototype():
    """In ``eval()`` the network returns ``LayerNorm_classes(max_m ⟨e, P_{k,m}⟩)`` per pixel, classes first as
    nnU-Net's predictor expects, with ``e`` the unit embedding of the pixel (spec §3.3)."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    torch.manual_seed(0)
    unet = PlainConvUNet(1, 2, (4, 8), torch.nn.Conv2d, 3, (1, 2), 2, 2, (1,), True,
                         torch.nn.InstanceNorm2d, {"affine": True}, nonlin=torch.nn.LeakyReLU)
    network = PrototypeUNet(unet, 3, prototypes_per_class=2, embedding_dim=8, classifier="labeled")
    torch.nn.init.normal_(network.class_norms["labeled"].weight)
    x = torch.randn(2, 1, 8, 8)
    embeddings = network.train()(x)[1][0]
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(2, 8, 8))
    bank = network.bank("labeled")
    nearest = torch.stack([(embeddings @ bank[k].t()).amax(-1) for k in range(3)], -1)
    expected = F.layer_norm(nearest, (3,), network.class_norms["labeled"].weight, network.class_norms["labeled"].bias)
    with torch.no_grad():
        torch.testing.assert_close(network.eval()(x), expected.movedim(-1, 1))


def test_the_masked_pseudo_label_takes_the_truth_for_annotated_organs_and_the_teacher_for_the_rest(union):
    _, preprocessed = union
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    trainer = start_trainer(nnUNetTrainerLTUDA, plans, dataset_json, "3d_tiny", start_loaders=False)
    annotated = trainer.annotation_mask(["liver_000"])
    teacher = torch.full((1, 2, 1, 1, 4), -5.0)
    teacher[0, 0, 0, 0, :2] = 5.0
    teacher[0, 1, 0, 0, 2] = 5.0
    target = torch.tensor([0, 1, 0, 0]).view(1, 1, 1, 1, 4)
    pseudo = trainer.masked_pseudo_label(teacher, target, annotated)
    assert pseudo.view(-1).tolist() == [0, 1, 2, 0], "liver from the truth only, spleen from the teacher"
    partial = partial_targets(target, annotated)
    assert partial["valid"][0, :, 0, 0, 0].tolist() == [True, False], "the unannotated organ is unknown, " \
                                                                        "never a background target"


def test_the_linear_head_learns_with_pbce_and_dice_and_the_paper_variant_with_pbce_alone(union):
    _, preprocessed = union
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    torch.manual_seed(3)
    logits, targets = torch.randn(2, 2, 4, 4), (torch.rand(2, 2, 4, 4) > 0.5).float()
    valid = torch.rand(2, 2, 4, 4) > 0.3
    bce, dice = partial_bce(logits, targets, valid), partial_soft_dice(logits, targets, valid)
    trainer = start_trainer(nnUNetTrainerLTUDA, plans, dataset_json, "3d_tiny", start_loaders=False)
    assert float(trainer.linear_head_loss(logits, targets, valid)) == pytest.approx(float(bce + dice), rel=1e-6)
    paper = start_trainer(nnUNetTrainerLTUDA_paper, plans, dataset_json, "3d_tiny", start_loaders=False)
    assert float(paper.linear_head_loss(logits, targets, valid)) == pytest.approx(float(bce), rel=1e-6)
    assert (paper.initial_lr, paper.weight_decay) == (1e-3, 0.0)


def test_online_validation_uses_the_prototype_classifier_once_stage_two_has_trained_its_bank(union):
    _, preprocessed = union
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    trainer = start_trainer(nnUNetTrainerLTUDA, plans, dataset_json, "3d_tiny", start_loaders=False)
    network = trainer.trained_network
    trainer.optimizer_steps = trainer.num_epochs * trainer.num_iterations_per_epoch // 2
    assert trainer.in_stage_two
    trainer.on_validation_epoch_start()
    assert network.classifier == "linear", "the epoch ending at the switch trained no bank: the threshold rule"
    network.seeded("unlabeled")[0] = True
    trainer.on_validation_epoch_start()
    assert network.classifier == "unlabeled"


@pytest.fixture(scope="module")
def trained_ltuda(union, nnunet_folders, run_command):
    folder, _ = union
    run_command("nnUNetv2_train", str(UNION_ID), "3d_tiny", "0", "-tr", LTUDA_SMOKE, "-device", "cpu")
    return Path(nnunet_folders["nnUNet_results"]) / folder.name / f"{LTUDA_SMOKE}__nnUNetPlans__3d_tiny"


def test_ltuda_trains_through_the_stage_switch_and_resumes_with_teacher_and_banks(trained_ltuda, union):
    checkpoint_file = trained_ltuda / "fold_0" / "checkpoint_final.pth"
    saved = torch.load(checkpoint_file, map_location="cpu", weights_only=False)
    assert saved["logging"]["stage"] == [1.0, 2.0]
    ppc = saved["logging"]["loss_ppc"]
    assert np.isnan(ppc[0]) and ppc[1] > 0, "the prototype terms start at the switch"
    assert all(v > 0 for v in saved["logging"]["loss_strong_pseudo"])
    trainer, _ = resumed_trainer(nnUNetTrainerLTUDA, checkpoint_file)
    assert trainer.optimizer_steps == 6, "the step counter, hence the stage, is restored"
    for bank in ("prototypes_labeled", "prototypes_unlabeled", "seeded_labeled", "seeded_unlabeled"):
        assert torch.equal(trainer.trained_network.state_dict()[bank], saved["network_weights"][bank])
        assert torch.equal(trainer.teacher.network.state_dict()[bank],
                           checkpoint_method_state(saved)["teacher_weights"][bank])
    assert saved["network_weights"]["seeded_labeled"][0] and saved["network_weights"]["seeded_unlabeled"][0], \
        "stage 2 seeded the background prototypes of both banks, and the exported weights carry them"


def test_ltuda_predicts_with_the_stock_predictor_and_each_classifier(trained_ltuda, union, run_command, tmp_path):
    folder, _ = union
    model = ("-d", str(UNION_ID), "-c", "3d_tiny", "-f", "0", "-tr", LTUDA_SMOKE, "-device", "cpu", "-npp", "0",
             "-nps", "0", "--disable_tta")
    run_command("nnUNetv2_predict", "-i", str(folder / "imagesTs"), "-o", str(tmp_path / "stock"), *model)
    assert len(list((tmp_path / "stock").glob("*.nii.gz"))) == 4
    for classifier in ("linear", "labeled"):
        run_command(*NNUNET_EXT, "predict", "-i", str(folder / "imagesTs"), "-o", str(tmp_path / classifier), *model,
                    "--classifier", classifier)
        assert len(list((tmp_path / classifier).glob("*.nii.gz"))) == 4
    run_command(*NNUNET_EXT, "evaluate", str(folder / "labelsTs"), str(tmp_path / "stock"), "-o",
                str(tmp_path / "s.json"), "--annotated-labels-from", str(folder / "dataset.json"))


def test_benchmark_measures_ltuda_in_the_stage_the_training_fraction_names(union):
    from nnunet_ext.benchmark import benchmark
    measured = {}
    for fraction in (0.25, 1.0):
        results = benchmark(str(UNION_ID), "3d_tiny", "nnUNetPlans", ["nnUNetTrainerLTUDA"], "0", warmup=3, steps=5,
                            inference_repeats=1, device=torch.device("cpu"), training_fraction=fraction)
        assert results["training_fraction"] == fraction
        measured[fraction] = results["trainers"]["nnUNetTrainerLTUDA"]
        assert measured[fraction]["ratio_same_labeled_batch"] > 0 and measured[fraction]["inference_ratio"] > 0
    assert measured[0.25]["last_step"]["stage"] == 1.0 and "loss_ppc" not in measured[0.25]["last_step"]
    assert measured[1.0]["last_step"]["stage"] == 2.0 and measured[1.0]["last_step"]["loss_ppc"] > 0
    with pytest.raises(ValueError, match="training-fraction"):
        benchmark(str(UNION_ID), "3d_tiny", "nnUNetPlans", ["nnUNetTrainerLTUDA"], "0", 3, 5, 1,
                  torch.device("cpu"), training_fraction=1.5)
