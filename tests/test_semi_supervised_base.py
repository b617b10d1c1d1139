"""The multi-stream base under the semi-supervised trainers: what each term is made of, what the teacher and the
streams do, and the datasets and configurations the trainers accept or refuse.

Trainers are built directly on tiny synthetic datasets (a ``3d_tiny`` configuration, see
``conftest.add_tiny_configuration``) and stepped on batches from their real loaders.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import add_tiny_configuration, start_trainer
from nnunet_ext.cli import main as nnunet_ext
from nnunet_ext.dataset_conversion.synthetic import write_synthetic_dataset
from nnunet_ext.trainers import (nnUNetTrainerDTC, nnUNetTrainerMeanTeacher, nnUNetTrainerUAMT, nnUNetTrainerUGMCL,
                                 nnUNetTrainerUGMCL_unlabeledConsistency)
from nnunet_ext.training.uncertainty import stochastic_teacher_passes

TRAINERS = [nnUNetTrainerMeanTeacher, nnUNetTrainerUAMT, nnUNetTrainerDTC, nnUNetTrainerUGMCL]
DATASETS = {"binary": (940, {}), "multiclass": (941, {"label_set": "multiclass"}),
            "regions": (942, {"label_set": "regions"}), "ignore": (943, {"ignore_label": True})}


@pytest.fixture(scope="module")
def datasets(nnunet_folders):
    """Each synthetic dataset planned and preprocessed, with a ``3d_tiny`` configuration: name → (plans, json)."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    loaded = {}
    for kind, (dataset_id, options) in DATASETS.items():
        write_synthetic_dataset(dataset_id, f"SynthBase{kind.capitalize()}", num_labeled=5, num_unlabeled=3,
                                num_test=0, raw_root=nnunet_folders["nnUNet_raw"], **options)
        nnunet_ext(["plan_and_preprocess", "-d", str(dataset_id), "-c", "3d_fullres", "-np", "1", "-npfp", "1"])
        folder = Path(nnunet_folders["nnUNet_preprocessed"]) / maybe_convert_to_dataset_name(dataset_id)
        add_tiny_configuration(str(folder / "nnUNetPlans.json"))
        loaded[kind] = (json.loads((folder / "nnUNetPlans.json").read_text()),
                        json.loads((folder / "dataset.json").read_text()))
    return loaded


def make_trainer(cls, dataset, configuration: str = "3d_tiny", start_loaders: bool = True, **attributes):
    return start_trainer(cls, *dataset, configuration, start_loaders, **attributes)


def finish(trainer) -> None:
    for stream in trainer.streams.values():
        stream.finish()


# ------------------------------------------------------------------------------------------ what the terms are

TOTAL = {  # the objective of each trainer from its logged terms, with every ramp at its maximum
    nnUNetTrainerMeanTeacher: lambda t, tr: t["loss_supervised"] + 0.1 * t["loss_consistency"],
    nnUNetTrainerUAMT: lambda t, tr: t["loss_supervised"] + 0.1 * t["loss_consistency"],
    nnUNetTrainerDTC: lambda t, tr: t["loss_supervised"] + 0.3 * t["loss_level_set"] + 1.0 * t["loss_dual_task"],
    nnUNetTrainerUGMCL: lambda t, tr: (t["loss_supervised"] + t["loss_level_set_dice"] + 0.3 * t["loss_level_set"]
                                       + 0.1 * (0.5 * t["loss_intra_task"] + t["loss_cross_task"])),
}


@pytest.mark.parametrize("cls", TRAINERS)
def test_loss_is_the_supervised_term_plus_the_weighted_unsupervised_terms(cls, datasets):
    """With the ramp forced to 1 the logged total equals the paper's sum of the logged terms: a wrong sign or a
    term left out of the total fails."""
    trainer = make_trainer(cls, datasets["binary"], consistency_rampup=0.0)
    terms = {k: float(v) for k, v in trainer.train_step(next(trainer.dataloader_train)).items()}
    finish(trainer)
    unsupervised = [k for k in terms if k in ("loss_consistency", "loss_dual_task", "loss_intra_task")]
    assert unsupervised and all(terms[k] > 0 for k in unsupervised)
    assert terms["loss"] == pytest.approx(TOTAL[cls](terms, trainer), rel=1e-5)


def consistency_gradients(trainer, names) -> dict:
    """``{term: (gradient on the labeled inputs, gradient on the unlabeled inputs)}`` of one step's terms, at the
    end of training, where UA-MT's certainty threshold keeps every voxel but the maximally uncertain ones (at the
    start an untrained teacher can be uncertain everywhere, and a masked term then has no gradient at all)."""
    trainer.optimizer_steps = trainer.num_epochs * trainer.num_iterations_per_epoch
    batches = trainer.next_batches(next(trainer.dataloader_train))
    labeled, channels = batches["labeled"]["data"], trainer.num_input_channels
    data = torch.cat((labeled[:, :channels], batches["unlabeled"]["data"])).requires_grad_(True)
    terms = trainer.compute_loss(data, trainer.network(data), batches["labeled"]["target"], labeled[:, channels:],
                                 labeled.shape[0])
    finish(trainer)
    gradients = {}
    for name in names:
        if name in terms:
            gradient, = torch.autograd.grad(terms[name], data, retain_graph=True)
            gradients[name] = (gradient[:labeled.shape[0]], gradient[labeled.shape[0]:])
    return gradients


@pytest.mark.parametrize("cls", [nnUNetTrainerMeanTeacher, nnUNetTrainerUAMT, nnUNetTrainerUGMCL_unlabeledConsistency])
def test_unlabeled_consistency_has_no_gradient_on_the_labeled_inputs(cls, datasets):
    trainer = make_trainer(cls, datasets["binary"], consistency_rampup=0.0, consistency_on="unlabeled")
    gradients = consistency_gradients(trainer, ("loss_consistency", "loss_intra_task", "loss_cross_task"))
    assert gradients
    for name, (on_labeled, on_unlabeled) in gradients.items():
        assert on_labeled.abs().max() == 0 and on_unlabeled.abs().max() > 0, name


def test_ugmcl_consistencies_cover_all_patches_by_default(datasets):
    trainer = make_trainer(nnUNetTrainerUGMCL, datasets["binary"], consistency_rampup=0.0)
    assert trainer.consistency_on == "all"
    gradients = consistency_gradients(trainer, ("loss_intra_task", "loss_cross_task"))
    assert len(gradients) == 2 and all(on_labeled.abs().max() > 0 for on_labeled, _ in gradients.values())


def test_teacher_passes_differ_without_input_noise(datasets):
    """UA-MT's uncertainty comes from the teacher's dropout too: with the input noise off, its passes differ."""
    trainer = make_trainer(nnUNetTrainerUAMT, datasets["binary"])
    assert trainer.teacher.network.training
    x = next(trainer.streams["unlabeled"])["data"]
    finish(trainer)
    passes = stochastic_teacher_passes(trainer.teacher_logits, x, 3, False, noise_std=0.0)
    assert not torch.allclose(passes[0], passes[1]) and not torch.allclose(passes[1], passes[2])


def test_ema_teacher_is_the_student_after_step_one_and_the_even_mix_after_step_two(datasets):
    trainer = make_trainer(nnUNetTrainerMeanTeacher, datasets["binary"])
    students = []
    for _ in range(2):
        trainer.train_step(next(trainer.dataloader_train))
        students.append({k: v.clone() for k, v in trainer.student.state_dict().items()})
        if len(students) == 1:
            teacher = trainer.teacher.state_dict()
            assert all(torch.equal(teacher[k], v) for k, v in students[0].items())
    finish(trainer)
    teacher = trainer.teacher.state_dict()
    for key, first in students[0].items():
        if first.dtype.is_floating_point:
            torch.testing.assert_close(teacher[key], 0.5 * first + 0.5 * students[1][key])
    assert any(not torch.equal(students[0][k], students[1][k]) for k in students[0])


# ------------------------------------------------------------------------------------------ datasets and set-ups

@pytest.mark.parametrize("kind", ["multiclass", "regions"])
@pytest.mark.parametrize("cls", TRAINERS)
def test_every_trainer_trains_on_multiclass_and_region_datasets(cls, kind, datasets):
    trainer = make_trainer(cls, datasets[kind], consistency_rampup=0.0)
    assert trainer.label_manager.has_regions == (kind == "regions")
    assert trainer.label_manager.num_segmentation_heads == (2 if kind == "regions" else 3)
    for _ in range(2):
        terms = trainer.train_step(next(trainer.dataloader_train))
    finish(trainer)
    assert all(np.isfinite(float(v)) for v in terms.values())


@pytest.mark.parametrize("cls", [nnUNetTrainerMeanTeacher, nnUNetTrainerUAMT, nnUNetTrainerUGMCL])
def test_ignore_label_datasets_train_with_random_unlabeled_patches(cls, datasets):
    """nnU-Net's loader samples ignore-label datasets around annotated voxels, which unlabeled cases do not have
    (it raised KeyError before); the unlabeled stream draws uniformly random patches instead."""
    trainer = make_trainer(cls, datasets["ignore"], consistency_rampup=0.0)
    assert trainer.label_manager.has_ignore_label
    assert not trainer.streams["unlabeled"].loader.has_ignore
    terms = trainer.train_step(next(trainer.dataloader_train))
    finish(trainer)
    assert all(np.isfinite(float(v)) for v in terms.values())
    if cls is nnUNetTrainerUGMCL:
        assert "loss_level_set" not in terms and "loss_level_set_dice" in terms


def test_dtc_refuses_ignore_label_datasets(datasets):
    with pytest.raises(NotImplementedError, match="dense labels"):
        make_trainer(nnUNetTrainerDTC, datasets["ignore"], start_loaders=False)


def test_cascade_configurations_are_refused_at_initialize(datasets):
    plans, dataset_json = datasets["binary"]
    plans = json.loads(json.dumps(plans))
    plans["configurations"]["3d_lowres"] = {"inherits_from": "3d_fullres", "data_identifier": "lowres_unused",
                                            "next_stage": "3d_cascade_fullres"}
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    with pytest.raises(NotImplementedError, match="cascade configuration 3d_cascade_fullres"):
        make_trainer(nnUNetTrainerMeanTeacher, (plans, dataset_json), "3d_cascade_fullres", start_loaders=False)


def stock_checkpoint(dataset, path: Path) -> dict:
    """``network_weights`` of a stock nnU-Net network of the plans, saved as nnU-Net's checkpoints hold them."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    plans, dataset_json = dataset
    manager = PlansManager(plans)
    torch.manual_seed(7)
    network = nnUNetTrainer.build_network_architecture(manager, manager.get_configuration("3d_tiny"), 1, 2, True)
    weights = network.state_dict()
    torch.save({"network_weights": weights}, path)
    return weights


def test_pretrained_weights_of_a_stock_model_load_into_the_wrapped_network(datasets, tmp_path):
    """What ``nnUNetv2_train -pretrained_weights`` calls: every stock weight but the segmentation layers arrives;
    the level-set head, which stock nnU-Net lacks, starts fresh and is named in the log."""
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
    stock = stock_checkpoint(datasets["binary"], tmp_path / "stock.pth")
    trainer = make_trainer(nnUNetTrainerDTC, datasets["binary"], start_loaders=False)
    head_before = {k: v.clone() for k, v in trainer.student.state_dict().items() if k.startswith("level_set_head")}
    load_pretrained_weights(trainer.network, str(tmp_path / "stock.pth"))
    loaded = trainer.student.state_dict()
    transferred = [k for k in stock if ".seg_layers." not in k]
    assert transferred and all(torch.equal(loaded[k], stock[k]) for k in transferred)
    assert head_before and all(torch.equal(loaded[k], v) for k, v in head_before.items())
    assert "level_set_head" in Path(trainer.log_file).read_text()


def test_teacher_starts_as_the_pretrained_student(datasets, tmp_path):
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
    stock_checkpoint(datasets["binary"], tmp_path / "stock.pth")
    trainer = make_trainer(nnUNetTrainerMeanTeacher, datasets["binary"], start_loaders=False)
    load_pretrained_weights(trainer.network, str(tmp_path / "stock.pth"))
    trainer.on_train_start()
    finish(trainer)
    student, teacher = trainer.student.state_dict(), trainer.teacher.state_dict()
    assert all(torch.equal(teacher[k], v) for k, v in student.items())


@pytest.mark.parametrize("cls", TRAINERS)
def test_stock_predictor_returns_the_networks_eval_output(cls, datasets):
    """nnU-Net's sliding-window prediction of a preprocessed case (one tile: the plans' patch covers the 32³ case;
    no Gaussian weighting, whose corner weights underflow nnU-Net's half-precision accumulators) equals the trained
    network's own ``eval()`` output on it up to that half precision: no head, dropout or level set leaks into
    inference."""
    from nnunet_ext.inference import predictor_for_network
    trainer = make_trainer(cls, datasets["binary"], "3d_fullres", start_loaders=False)
    dataset = trainer.dataset_class(trainer.preprocessed_dataset_folder)
    case = torch.from_numpy(np.asarray(dataset.load_case(dataset.identifiers[0])[0][:]))
    assert tuple(case.shape[1:]) == tuple(trainer.configuration_manager.patch_size)
    trainer.set_deep_supervision_enabled(False)
    network = trainer.network.eval()
    predictor = predictor_for_network(network, trainer.plans_manager, trainer.configuration_manager,
                                      trainer.dataset_json, cls.__name__, torch.device("cpu"), use_gaussian=False)
    predicted = predictor.predict_sliding_window_return_logits(case)
    with torch.no_grad():
        direct = network(case[None])[0]
    torch.testing.assert_close(predicted.float(), direct.float(), rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------------------------------------ checkpoints and logs

def test_checkpoints_carry_the_method_state_in_one_atomic_write(datasets, tmp_path, monkeypatch):
    from nnunet_ext.training.term_logger import checkpoint_method_state
    trainer = make_trainer(nnUNetTrainerMeanTeacher, datasets["binary"])
    trainer.train_step(next(trainer.dataloader_train))
    finish(trainer)
    path, writes, real_save = tmp_path / "checkpoint_latest.pth", [], torch.save

    def counting(obj, f, *args, **kwargs):
        writes.append(str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", counting)
    trainer.save_checkpoint(str(path))
    assert len(writes) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_latest.pth"]
    state = checkpoint_method_state(torch.load(path, weights_only=False))
    assert state["optimizer_steps"] == 1
    assert all(torch.equal(state["teacher_weights"][k], v) for k, v in trainer.teacher.state_dict().items())

    def killed_while_writing(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    trainer.optimizer_steps = 2
    monkeypatch.setattr(torch, "save", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(str(path))
    assert checkpoint_method_state(torch.load(path, weights_only=False))["optimizer_steps"] == 1


def test_terms_missing_in_an_epoch_are_logged_as_nan_and_progress_still_draws(datasets, tmp_path):
    import time
    from PIL import Image
    trainer = make_trainer(nnUNetTrainerMeanTeacher, datasets["binary"], start_loaders=False)
    logger = trainer.logger
    for epoch in range(2):
        trainer.current_epoch = epoch
        outputs = [{"loss": np.array(1.0), "loss_supervised": np.array(0.5), "weight_consistency": np.array(0.1)}]
        if epoch == 1:
            outputs[0]["loss_consistency"] = np.array(0.25)
        trainer.on_train_epoch_end(outputs)
        for key, value in (("val_losses", 0.9), ("mean_fg_dice", 0.5), ("dice_per_class_or_region", [0.5]),
                           ("lrs", 0.01), ("epoch_start_timestamps", time.time()),
                           ("epoch_end_timestamps", time.time() + 1)):
            logger.log(key, value, epoch)
    consistency = logger.get_value("loss_consistency", None)
    assert np.isnan(consistency[0]) and consistency[1] == 0.25
    assert logger.get_value("loss_supervised", None) == [0.5, 0.5]
    logger.plot_progress_png(str(tmp_path))
    with Image.open(tmp_path / "progress.png") as image:
        width, height = image.size
    assert height > width * 54 / 30  # nnU-Net's 30 × 54 inch figure plus the panel of method terms
