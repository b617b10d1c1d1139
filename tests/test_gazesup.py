"""GazeSup is real: L separate level networks, each fitted to its own level's pseudo-mask; the consistency term
is non-zero, logged and reaches the networks in both ``pure`` and ``prop`` modes; its pieces match values
computed independently; and end to end, as a user types it, nnUNetv2_train → stock nnUNetv2_predict writes
binary masks → nnunet_ext evaluate, plus ``--c`` resume."""
import json
import os
import sys
from itertools import product
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from conftest import start_trainer
from nnunet_ext.cli import main as nnunet_ext
from nnunet_ext.dataset_conversion.synthetic import write_synthetic_gaze_dataset
from nnunet_ext.losses import SummedBinaryCrossEntropy
from nnunet_ext.networks import MultiLevelUNet
from nnunet_ext.trainers import nnUNetTrainerGazeSup, nnUNetTrainerGazeSup_flipsOnly, nnUNetTrainerGazeSup_pure
from nnunet_ext.trainers.nnUNetTrainerGazeSup import PLANS_LEVELS_KEY
from nnunet_ext.training.level_consistency import level_agreement, neighbourhood_affinity, propagate

DATASET_ID = 980


def test_level_agreement_matches_the_formula_and_stops_peer_gradients():
    rng = np.random.default_rng(0)
    z = torch.tensor(rng.normal(0, 2, (2, 3, 4, 5)), dtype=torch.float32, requires_grad=True)
    peers = torch.tensor(rng.normal(0, 2, (2, 3, 4, 5)), dtype=torch.float32, requires_grad=True)
    terms = level_agreement(z, peers)
    s, t = 1 / (1 + np.exp(-z.detach().numpy())), 1 / (1 + np.exp(-peers.detach().numpy()))
    for i in range(3):
        expected = -np.mean([np.mean((1 - s[:, i]) * (1 - t[:, j]) + s[:, i] * t[:, j]) for j in range(3) if j != i])
        assert terms[i].item() == pytest.approx(expected, rel=1e-5)
    assert torch.all(terms <= 0) and torch.all(terms >= -1)
    terms.sum().backward()
    assert z.grad.abs().sum() > 0 and peers.grad is None
    with pytest.raises(ValueError, match="at least 2 levels"):
        level_agreement(z[:, :1], peers[:, :1])


def brute_force_propagation(features: np.ndarray, kernel_size: int, dilation: int) -> np.ndarray:
    batch, channels, height, width = features.shape
    radius = (kernel_size // 2) * dilation
    out = np.zeros_like(features)
    for b, y, x in product(range(batch), range(height), range(width)):
        neighbours = []
        for dy, dx in product(range(-radius, radius + 1, dilation), repeat=2):
            inside = 0 <= y + dy < height and 0 <= x + dx < width
            neighbours.append(features[b, :, y + dy, x + dx] if inside else np.zeros(channels))
        logits = np.array([max(0.0, float(features[b, :, y, x] @ q)) for q in neighbours])
        weights = np.exp(logits - logits.max())
        weights /= weights.sum()
        out[b, :, y, x] = sum(w * q for w, q in zip(weights, neighbours))
    return out


def test_feature_propagation_matches_brute_force():
    features = np.random.default_rng(1).normal(0, 1, (2, 3, 7, 6))
    ours = propagate(torch.tensor(features), kernel_size=5, dilation=2).double().numpy()
    np.testing.assert_allclose(ours, brute_force_propagation(features.astype(np.float32), 5, 2), atol=1e-5)
    small = propagate(torch.tensor(features), kernel_size=3, dilation=1).double().numpy()
    np.testing.assert_allclose(small, brute_force_propagation(features.astype(np.float32), 3, 1), atol=1e-5)


def test_affinity_gradients_match_finite_differences():
    features = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: neighbourhood_affinity(f, 5, 2)[0], (features,))
    assert torch.autograd.gradcheck(lambda f: neighbourhood_affinity(f, 3, 1)[0], (features,))


def test_propagating_bias_free_logits_equals_the_layer_on_propagated_features():
    """classifier(f̃) = propagate(f, W f) + b, values and gradients (how the trainer computes z̃)."""
    layer = torch.nn.Conv2d(4, 1, 1)
    features = torch.randn(2, 4, 9, 8, requires_grad=True)
    reference = layer(propagate(features))
    bias = layer.bias.view(1, 1, 1, 1)
    cheap = propagate(features, layer(features) - bias) + bias
    torch.testing.assert_close(cheap, reference, rtol=1e-5, atol=1e-5)
    grads = [torch.autograd.grad(out.square().sum(), [features, layer.weight, layer.bias]) for out in (reference, cheap)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_summed_bce_is_the_sum_of_per_level_means():
    rng = np.random.default_rng(2)
    logits = torch.tensor(rng.normal(0, 1, (2, 3, 4, 4)), dtype=torch.float32)
    target = torch.tensor(rng.integers(0, 2, (2, 3, 4, 4)), dtype=torch.bool)
    expected = sum(F.binary_cross_entropy_with_logits(logits[:, k], target[:, k].float()) for k in range(3))
    assert SummedBinaryCrossEntropy()(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def tiny_unet() -> torch.nn.Module:
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    return PlainConvUNet(3, 3, (4, 8, 16), torch.nn.Conv2d, 3, (1, 2, 2), 1, 1, (1, 1), True,
                         torch.nn.InstanceNorm2d, {"affine": True}, nonlin=torch.nn.LeakyReLU, deep_supervision=True)


def test_multi_level_unet_levels_are_separate_and_eval_returns_the_mean_logit():
    network = MultiLevelUNet(tiny_unet(), 3)
    assert len(network.levels) == 3
    first, *others = [dict(level.named_parameters()) for level in network.levels]
    for other in others:
        assert all(torch.equal(first[k], other[k]) and first[k].data_ptr() != other[k].data_ptr() for k in first)
    x = torch.randn(2, 3, 16, 16)
    network.train()
    training = network(x)
    assert [tuple(o.shape) for o in training] == [(2, 3, 16, 16), (2, 3, 8, 8)]
    assert [tuple(f.shape) for f in network.last_features()] == [(2, 4, 16, 16)] * 3
    network.eval()
    with torch.no_grad():
        for level in network.levels[1:]:
            level.decoder.seg_layers[-1].bias.add_(torch.randn(1))
        inference = network(x)
        per_level = torch.cat([level(x)[0] for level in network.levels], 1)
    assert inference.shape == (2, 1, 16, 16)
    torch.testing.assert_close(inference[:, 0], per_level.mean(1))


def test_compiled_network_keeps_the_decoder_features_and_their_gradients():
    """nnU-Net wraps the network in torch.compile on CUDA by default; the forward hooks that read each level's
    last decoder features must survive it: same outputs and features as eager, gradients through them."""
    network = MultiLevelUNet(tiny_unet(), 2)
    eager = MultiLevelUNet(tiny_unet(), 2)
    eager.load_state_dict(network.state_dict())
    x = torch.randn(2, 3, 16, 16)
    output = torch.compile(network)(x)
    features = network.last_features()
    expected_output, expected_features = eager(x), eager.last_features()
    for ours, theirs in zip([*output, *features], [*expected_output, *expected_features]):
        torch.testing.assert_close(ours, theirs)
    sum(f.square().sum() for f in features).backward()
    for level in network.levels:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in level.decoder.stages[-1].parameters())
        assert all(p.grad is None or not p.grad.any() for p in level.decoder.seg_layers[-1].parameters())


@pytest.fixture(scope="module")
def gaze_dataset(nnunet_folders) -> Path:
    raw = write_synthetic_gaze_dataset(DATASET_ID, "SynthGaze", num_training=6, num_test=2, size=48,
                                       raw_root=nnunet_folders["nnUNet_raw"])
    nnunet_ext(["plan_and_preprocess", "-d", str(DATASET_ID), "-c", "2d", "-np", "1", "-npfp", "1"])
    return Path(raw)


def make_trainer(cls, nnunet_folders, **attributes):
    from batchgenerators.utilities.file_and_folder_operations import load_json
    folder = next(Path(nnunet_folders["nnUNet_preprocessed"]).glob(f"Dataset{DATASET_ID}_*"))
    plans, dataset_json = load_json(str(folder / "nnUNetPlans.json")), load_json(str(folder / "dataset.json"))
    return start_trainer(cls, plans, dataset_json, "2d", **attributes)


def test_each_level_network_is_fitted_to_its_own_level(gaze_dataset, nnunet_folders):
    """Without consistency, level k's loss moves only network k, towards target k: with target 1 all
    foreground and target 2 all background, one step raises level 1's probability and lowers level 2's."""
    trainer = make_trainer(nnUNetTrainerGazeSup, nnunet_folders, consistency_weight=0.0)
    network = trainer.trained_network
    assert trainer.num_levels == 2 and len(network.levels) == 2
    assert trainer.configuration_manager.configuration[PLANS_LEVELS_KEY] == 2
    batch = next(trainer.dataloader_train)
    assert batch["target"][0].shape[1] == 2
    output = network(batch["data"])
    for k in range(2):
        level_loss = trainer.loss([o[:, k:k + 1] for o in output], [t[:, k:k + 1] for t in batch["target"]])
        grads = [torch.autograd.grad(level_loss, list(level.parameters()), retain_graph=True, allow_unused=True)
                 for level in network.levels]
        norms = [sum(float(g.abs().sum()) for g in level_grads if g is not None) for level_grads in grads]
        assert norms[k] > 0 and norms[1 - k] == 0, norms
    network.last_features()

    def foreground_probability():
        with torch.no_grad():
            return torch.sigmoid(network(batch["data"])[0]).mean((0, 2, 3))

    before = foreground_probability()
    ones_and_zeros = [torch.stack((torch.ones_like(t[:, 0]), torch.zeros_like(t[:, 1])), 1)
                      for t in batch["target"]]
    trainer.train_step({"data": batch["data"], "target": ones_and_zeros})
    after = foreground_probability()
    assert after[0] > before[0] and after[1] < before[1], (before, after)


@pytest.mark.parametrize("cls", [nnUNetTrainerGazeSup, nnUNetTrainerGazeSup_pure])
def test_consistency_is_nonzero_logged_and_reaches_every_level(cls, gaze_dataset, nnunet_folders):
    trainer = make_trainer(cls, nnunet_folders)
    captured = {}
    compute_loss = trainer.compute_loss

    def capturing(output, target):
        terms = compute_loss(output, target)
        for k, level in enumerate(trainer.trained_network.levels):
            grads = torch.autograd.grad(terms["loss_consistency"], list(level.parameters()), retain_graph=True,
                                        allow_unused=True)
            captured[k] = sum(float(g.abs().sum()) for g in grads if g is not None)
        captured["value"] = terms["loss_consistency"].item()
        return terms

    trainer.compute_loss = capturing
    outputs = trainer.train_step(next(trainer.dataloader_train))
    assert -1 <= captured["value"] < 0
    assert captured[0] > 0 and captured[1] > 0
    assert float(outputs["loss_consistency"]) == pytest.approx(captured["value"], rel=1e-5)
    assert float(outputs["loss"]) == pytest.approx(float(outputs["loss_bce"]) + 3 * 2 * captured["value"], rel=1e-4)


def test_prop_consistency_is_the_agreement_of_brute_force_propagated_logits(gaze_dataset, nnunet_folders):
    """prop: C = level_agreement(z̃, z) with z̃_k = W_k f̃_k + b_k, f̃_k level k's own features propagated by
    the brute-force loop above, W_k and b_k its own segmentation layer; pure: level_agreement(z, z)."""
    trainer = make_trainer(nnUNetTrainerGazeSup, nnunet_folders)
    network = trainer.trained_network
    data = next(trainer.dataloader_train)["data"][:2]
    with torch.no_grad():
        output = trainer.network(data)
        features = network.last_features()
        for tap, level_features in zip(network._taps, features):
            tap.features = level_features
        propagated = trainer.consistency(output)
        trainer.consistency_mode = "pure"
        pure = trainer.consistency(output)
    logits = output[0]
    brute_force = []
    for k, level_features in enumerate(features):
        layer = network.final_segmentation_layer(k)
        spread = torch.tensor(brute_force_propagation(level_features.double().numpy(), 5, 2))
        brute_force.append(F.conv2d(spread, layer.weight.detach().double(), layer.bias.detach().double()))
    expected = level_agreement(torch.cat(brute_force, 1).float(), logits)
    assert propagated.shape == pure.shape == (2,)
    torch.testing.assert_close(propagated, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(pure, level_agreement(logits, logits))
    assert not torch.allclose(propagated, pure)


def augmented_outputs(trainer, image: torch.Tensor, segmentation: torch.Tensor, draws: int) -> list:
    """``draws`` outputs of the trainer's training transforms on one (image, segmentation) sample."""
    rotation, dummy_2d, _, mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    transforms = trainer.get_training_transforms(
        trainer.configuration_manager.patch_size, rotation, trainer._get_deep_supervision_scales(), mirror_axes,
        dummy_2d, trainer.configuration_manager.use_mask_for_norm, False, trainer.label_manager.foreground_labels,
        trainer.label_manager.foreground_regions, trainer.label_manager.ignore_label)
    return [transforms(image=image.clone(), segmentation=segmentation.clone()) for _ in range(draws)]


def test_flips_only_variant_flips_and_does_nothing_else(gaze_dataset, nnunet_folders):
    trainer = make_trainer(nnUNetTrainerGazeSup_flipsOnly, nnunet_folders)
    patch = tuple(trainer.configuration_manager.patch_size)
    assert tuple(next(trainer.dataloader_train)["data"].shape[2:]) == patch
    generator = torch.Generator().manual_seed(0)
    image = torch.randn((3, *patch), generator=generator)
    segmentation = torch.randint(0, 3, (1, *patch), generator=generator).to(torch.int16)
    flips = [(), (1,), (2,), (1, 2)]
    seen = set()
    for out in augmented_outputs(trainer, image, segmentation, 40):
        matches = [dims for dims in flips if torch.equal(out["image"], image.flip(dims) if dims else image)]
        assert len(matches) == 1, "the image is not a flip of the input"
        dims = matches[0]
        ordinal = segmentation.flip(dims) if dims else segmentation
        regions = torch.cat([ordinal >= 1, ordinal >= 2]).to(out["segmentation"][0].dtype)
        assert torch.equal(out["segmentation"][0], regions)
        assert len(out["segmentation"]) == len(trainer._get_deep_supervision_scales())
        seen.add(dims)
    assert seen == set(flips)
    stock = make_trainer(nnUNetTrainerGazeSup, nnunet_folders)
    stock_outputs = augmented_outputs(stock, image, segmentation, 40)
    assert any(not any(torch.equal(out["image"], image.flip(dims) if dims else image) for dims in flips)
               for out in stock_outputs), "the stock pipeline should do more than flips"


def test_paper_variant_trains_with_the_papers_optimiser_and_flips(gaze_dataset, nnunet_folders):
    from nnunet_ext.trainers import nnUNetTrainerGazeSup_paper
    trainer = make_trainer(nnUNetTrainerGazeSup_paper, nnunet_folders)
    assert trainer.num_epochs * trainer.num_iterations_per_epoch == 15000
    assert trainer.inference_allowed_mirroring_axes is None, "the paper predicts without mirroring"
    assert make_trainer(nnUNetTrainerGazeSup_flipsOnly, nnunet_folders).inference_allowed_mirroring_axes == (0, 1)
    group = trainer.optimizer.param_groups[0]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.99, True, 4e-4)
    assert sum(len(g["params"]) for g in trainer.optimizer.param_groups) == len(list(trainer.network.parameters()))
    for epoch, lr in ((0, 0.01), (trainer.num_epochs // 2, 0.00505), (trainer.num_epochs, 1e-4)):
        trainer.lr_scheduler.step(epoch)
        assert group["lr"] == pytest.approx(lr)
    patch = tuple(trainer.configuration_manager.patch_size)
    assert tuple(next(trainer.dataloader_train)["data"].shape[2:]) == patch
    image = torch.randn((3, *patch), generator=torch.Generator().manual_seed(0))
    segmentation = torch.zeros((1, *patch), dtype=torch.int16)
    for out in augmented_outputs(trainer, image, segmentation, 8):
        assert any(torch.equal(out["image"], image.flip(dims) if dims else image) for dims in [(), (1,), (2,), (1, 2)])


def test_plain_label_dataset_is_refused_with_a_clear_error(nnunet_folders):
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    from nnunet_ext.gaze import gaze_level_count
    with pytest.raises(ValueError, match="nested regions"):
        gaze_level_count({"name": "X", "labels": {"background": 0, "polyp": 1}},
                         LabelManager({"background": 0, "polyp": 1}, None))
    with pytest.raises(ValueError, match="not nested"):
        labels = {"background": 0, "a": [1, 2], "b": [1]}
        gaze_level_count({"name": "X", "labels": labels}, LabelManager(labels, [1, 2]))


def assert_validation_is_scored_against_gaze_level_1(model: Path, raw: Path) -> None:
    """The binary validation exports, scored the way nnU-Net's tools score a results folder (the final
    validation's summary.json; find_best_configuration's cross-validation reads the folder's dataset.json
    the same way), agree with an independent Dice against gaze level 1 (ordinal label ≥ 1)."""
    from PIL import Image
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder2
    validation = model / "fold_0" / "validation"
    names = sorted(p.name for p in validation.glob("*.png"))
    assert names
    expected = {}
    for name in names:
        predicted = np.asarray(Image.open(validation / name)) > 0
        level_1 = np.asarray(Image.open(raw / "labelsTr" / name)) >= 1
        assert level_1.any() and not np.all(level_1 == (np.asarray(Image.open(raw / "labelsTr" / name)) == 1))
        expected[name] = 2 * (predicted & level_1).sum() / (predicted.sum() + level_1.sum())
    summary = json.loads((validation / "summary.json").read_text())
    assert {Path(c["prediction_file"]).name: c["metrics"]["(1, 2)"]["Dice"]
            for c in summary["metric_per_case"]} == pytest.approx(expected)
    compute_metrics_on_folder2(str(raw / "labelsTr"), str(validation), str(model / "dataset.json"),
                               str(model / "plans.json"), str(model / "rescored.json"), num_processes=1, chill=True)
    rescored = json.loads((model / "rescored.json").read_text())
    assert {Path(c["prediction_file"]).name: c["metrics"]["(1, 2)"]["Dice"]
            for c in rescored["metric_per_case"]} == pytest.approx(expected)


def assert_export_is_the_mean_level_logit_rule(model: Path, image: Path, run_command, tmp_path: Path) -> None:
    """The mask stock nnUNetv2_predict exports is σ(mean level logit) > 0.5 of the checkpoint's level networks.

    The checkpoint is first changed so that no other rule can pass: both levels' final layers are shifted by the
    same amount, which puts the mean logit's zero crossing at its median over the image, and scaled by the same
    factor, which puts 90 % of the pixels at least 1 away from it however little a two-epoch network has learnt;
    then their biases move by +8 and −8, which leaves the mean unchanged but makes level 1 alone say "all
    foreground" and level 2 alone "all background". Pixels whose mean logit lies within 0.5 of 0 are left out:
    nnU-Net's predictor accumulates the logits in float16 (its resolution is 0.5 only at a logit of 512)."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from PIL import Image
    plans_manager = PlansManager(str(model / "plans.json"))
    configuration = plans_manager.get_configuration("2d")
    dataset_json = json.loads((model / "dataset.json").read_text())
    data, _, properties = DefaultPreprocessor(verbose=False).run_case([str(image)], None, plans_manager,
                                                                      configuration, dataset_json)
    x = torch.from_numpy(data[:, 0][None]).float()
    assert [list(b) for b in properties["bbox_used_for_cropping"]] == [[0, 1]] + [[0, s] for s in x.shape[2:]]
    assert tuple(configuration.patch_size) == tuple(x.shape[2:]), "one tile, no padding"
    network = nnUNetTrainerGazeSup.build_network_architecture(plans_manager, configuration, x.shape[1], 1, False)
    checkpoint = torch.load(model / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    network.load_state_dict(checkpoint["network_weights"])
    network.eval()

    def level_logits() -> torch.Tensor:
        """nnU-Net's mirroring (every flip combination of the two axes, averaged) of each level's logit."""
        with torch.no_grad():
            flips = [(), (2,), (3,), (2, 3)]
            per_flip = [torch.stack([level(x.flip(f) if f else x) for level in network.levels]) for f in flips]
            unflipped = [p.flip([a + 1 for a in f]) if f else p for p, f in zip(per_flip, flips)]
            return torch.stack(unflipped).mean(0)[:, 0, 0]

    untouched = level_logits().mean(0)
    shift = -float(untouched.median())
    scale = 1 / float((untouched + shift).abs().quantile(0.1))
    with torch.no_grad():
        for k, spread in enumerate((8.0, -8.0)):
            layer = network.final_segmentation_layer(k)
            layer.weight.mul_(scale)
            layer.bias.add_(shift).mul_(scale).add_(spread)
    levels = level_logits()
    logit = levels.mean(0).numpy()
    expected, decided = logit > 0, np.abs(logit) > 0.5
    assert 0.1 < expected.mean() < 0.9 and decided.mean() > 0.8
    assert float(levels.abs().max()) < 256, "float16 resolves every level's logit to better than 0.25"
    checkpoint["network_weights"] = network.state_dict()
    torch.save(checkpoint, model / "fold_0" / "checkpoint_shifted.pth")
    run_command("nnUNetv2_predict", "-i", str(image.parent), "-o", str(tmp_path / "shifted"), "-d", str(DATASET_ID),
                "-c", "2d", "-f", "0", "-tr", model.name.split("__")[0], "-chk", "checkpoint_shifted.pth",
                "-device", "cpu", "-npp", "0", "-nps", "0")
    exported = np.asarray(Image.open(tmp_path / "shifted" / image.name.replace("_0000.png", ".png")))
    np.testing.assert_array_equal(exported[decided], expected[decided].astype(exported.dtype))


def test_train_predict_evaluate_and_resume(gaze_dataset, nnunet_folders, run_command, tmp_path):
    from PIL import Image
    smoke = "nnUNetTrainerGazeSup_smoke"
    run_command("nnUNetv2_train", str(DATASET_ID), "2d", "0", "-tr", smoke, "-device", "cpu")
    model = next(Path(nnunet_folders["nnUNet_results"]).glob(f"Dataset{DATASET_ID}_*")) / f"{smoke}__nnUNetPlans__2d"
    fold = model / "fold_0"
    saved = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert {k.split(".")[1] for k in saved["network_weights"]} == {"0", "1"}
    logged = saved["logging"]
    assert len(logged["loss_bce"]) == len(logged["loss_consistency"]) == 2
    assert all(-1 <= v < 0 for v in logged["loss_consistency"])
    assert (fold / "progress.png").is_file()
    inference_json = json.loads((model / "dataset.json").read_text())
    assert inference_json["labels"] == {"background": 0, "lesion": [1, 2]}
    assert inference_json["regions_class_order"] == [1]
    assert json.loads((model / "plans.json").read_text())["configurations"]["2d"][PLANS_LEVELS_KEY] == 2
    assert_validation_is_scored_against_gaze_level_1(model, gaze_dataset)

    prediction = tmp_path / "pred"
    run_command("nnUNetv2_predict", "-i", str(gaze_dataset / "imagesTs"), "-o", str(prediction), "-d", str(DATASET_ID),
        "-c", "2d", "-f", "0", "-tr", smoke, "-device", "cpu", "-npp", "0", "-nps", "0")
    for image in sorted((gaze_dataset / "imagesTs").glob("*.png")):
        predicted = np.asarray(Image.open(prediction / image.name.replace("_0000.png", ".png")))
        assert predicted.shape == np.asarray(Image.open(image)).shape[:2]
        assert set(np.unique(predicted)) <= {0, 1}
    run_command(sys.executable, "-m", "nnunet_ext.cli", "evaluate", "-ref", str(gaze_dataset / "labelsTs"),
        "-pred", str(prediction), "-o", str(tmp_path / "summary.json"), "--voxel-units")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["mean"]) == {"1"} and {"Dice", "Jaccard"} <= set(summary["mean"]["1"])
    one_image = tmp_path / "one_image"
    one_image.mkdir()
    first = sorted((gaze_dataset / "imagesTs").glob("*.png"))[0]
    (one_image / first.name).symlink_to(first)
    assert_export_is_the_mean_level_logit_rule(model, one_image / first.name, run_command, tmp_path)

    os.replace(fold / "checkpoint_final.pth", fold / "checkpoint_latest.pth")
    run_command("nnUNetv2_train", str(DATASET_ID), "2d", "0", "-tr", smoke, "-device", "cpu", "--c",
        NNUNET_EXT_TEST_EPOCHS="3")
    resumed = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert resumed["current_epoch"] == 3
    assert resumed["logging"]["loss_consistency"][:2] == logged["loss_consistency"]
    assert len(resumed["logging"]["loss_consistency"]) == 3
    assert not all(torch.equal(saved["network_weights"][k], v) for k, v in resumed["network_weights"].items())
