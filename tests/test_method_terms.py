"""The semi-supervised part is real: with the ramp forced to 1 every unsupervised term is non-zero and its
gradient reaches the student; the unlabeled stream reads only unlabeled cases, with random patches."""
import numpy as np
import pytest
import torch

from conftest import start_trainer
from nnunet_ext.cli import main as nnunet_ext
from nnunet_ext.data.transforms import LabelDerivedTargetTransform
from nnunet_ext.dataset_conversion.synthetic import write_synthetic_dataset
from nnunet_ext.trainers import nnUNetTrainerDTC, nnUNetTrainerMeanTeacher, nnUNetTrainerUAMT, nnUNetTrainerUGMCL

DATASET_ID = 970
UNSUPERVISED_TERMS = {
    nnUNetTrainerMeanTeacher: ["loss_consistency"],
    nnUNetTrainerUAMT: ["loss_consistency"],
    nnUNetTrainerDTC: ["loss_dual_task"],
    nnUNetTrainerUGMCL: ["loss_intra_task", "loss_cross_task"],
}


@pytest.fixture(scope="module")
def preprocessed(nnunet_folders):
    write_synthetic_dataset(DATASET_ID, "SynthTerms", num_labeled=5, num_unlabeled=3, num_test=0,
                            raw_root=nnunet_folders["nnUNet_raw"])
    nnunet_ext(["plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1", "-npfp", "1"])
    from batchgenerators.utilities.file_and_folder_operations import join, load_json
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    folder = join(nnunet_folders["nnUNet_preprocessed"], maybe_convert_to_dataset_name(DATASET_ID))
    return load_json(join(folder, "nnUNetPlans.json")), load_json(join(folder, "dataset.json"))


def make_trainer(cls, preprocessed, **attributes):
    return start_trainer(cls, *preprocessed, **attributes)


@pytest.mark.parametrize("cls", list(UNSUPERVISED_TERMS))
def test_unsupervised_terms_are_nonzero_and_reach_the_student(cls, preprocessed):
    trainer = make_trainer(cls, preprocessed, consistency_rampup=0.0)
    assert trainer.ramped(1.0) == 1.0
    captured = {}
    compute_loss = trainer.compute_loss

    def capturing(*args):
        terms = compute_loss(*args)
        params = [p for p in trainer.student.parameters() if p.requires_grad]
        for name in UNSUPERVISED_TERMS[cls]:
            grads = torch.autograd.grad(terms[name], params, retain_graph=True, allow_unused=True)
            captured[name] = (terms[name].item(), sum(float(g.abs().sum()) for g in grads if g is not None))
        return terms

    trainer.compute_loss = capturing
    outputs = trainer.train_step(next(trainer.dataloader_train))
    for name in UNSUPERVISED_TERMS[cls]:
        value, gradient = captured[name]
        assert value > 0 and gradient > 0, (name, value, gradient)
        assert float(outputs[name]) == pytest.approx(value, rel=1e-5)
    assert all(np.isfinite(float(v)) for v in outputs.values())
    trainer.streams["unlabeled"].finish()


def test_teacher_follows_student_after_steps(preprocessed):
    trainer = make_trainer(nnUNetTrainerMeanTeacher, preprocessed)
    before = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    for _ in range(2):
        trainer.train_step(next(trainer.dataloader_train))
    assert trainer.optimizer_steps == 2
    after = trainer.teacher.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in trainer.teacher.network.parameters())


def test_unlabeled_stream_reads_only_unlabeled_cases_with_random_patches(preprocessed):
    trainer = make_trainer(nnUNetTrainerDTC, preprocessed)
    stream = trainer.streams["unlabeled"]
    loader = stream.loader
    assert loader.oversample_foreground_percent == 0.0
    assert stream.spec.folder.endswith("_unlabeled") and not stream.spec.with_targets
    unlabeled = set(loader.indices)
    labeled = set(trainer.dataloader_train.data_loader.indices)
    assert unlabeled and not unlabeled & labeled
    assert not any(isinstance(t, LabelDerivedTargetTransform) for t in loader.transforms.transforms)
    loaded = []
    original = loader._data.load_case

    def recording(identifier):
        data, seg, seg_prev, properties = original(identifier)
        loaded.append((identifier, np.unique(seg[:]), properties["class_locations"]))
        return data, seg, seg_prev, properties

    loader._data.load_case = recording
    for _ in range(3):
        batch = next(stream)
        assert batch["data"].shape[1] == trainer.num_input_channels
        assert set(batch["keys"]) <= unlabeled
    assert loaded and all(key in unlabeled and set(values) <= {-1, 0} and locations == {}
                          for key, values, locations in loaded)


def test_benchmark_reports_ratios_against_stock(preprocessed, tmp_path):
    from nnunet_ext.benchmark import benchmark
    results = benchmark(str(DATASET_ID), "3d_fullres", "nnUNetPlans", ["nnUNetTrainerDTC"], "0", warmup=3, steps=5,
                        inference_repeats=1, device=torch.device("cpu"))
    assert results["device"].startswith("cpu") and f"torch {torch.__version__}" in results["device"]
    row = results["trainers"]["nnUNetTrainerDTC"]
    assert row["total_batch"] == 2 * results["labeled_batch"]
    stock_labeled = results["stock"]["same_labeled_batch"]["step_s_median"]
    stock_total = results["stock"][f"batch_{row['total_batch']}"]["step_s_median"]
    assert row["ratio_same_labeled_batch"] == pytest.approx(row["step_s_median"] / stock_labeled)
    assert row["ratio_same_total_batch"] == pytest.approx(row["step_s_median"] / stock_total)
    assert row["inference_ratio"] > 0
    stock_memory = results["stock"][f"batch_{row['total_batch']}"]["peak_memory_mb"]
    assert row["peak_memory_mb"] > 0 and row["memory_ratio_same_total_batch"] == pytest.approx(
        row["peak_memory_mb"] / stock_memory)
    with pytest.raises(ValueError, match="at least 3 warm-up"):
        benchmark(str(DATASET_ID), "3d_fullres", "nnUNetPlans", ["nnUNetTrainerDTC"], "0", 1, 5, 1,
                  torch.device("cpu"))
