"""Tests of ``nnunet_ext plan_and_preprocess`` on a tiny synthetic semi-supervised dataset (CPU, about a minute).

The full pipeline runs once per module (fingerprint, plan, preprocess labeled and unlabeled cases); the other
tests inspect its output or exercise failure paths that stop before any work is done.
"""
import json
import os
import shutil
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext import cli
from nnunet_ext.paths import REFERENCE_LABELS_DIR, UNLABELED_IMAGES_DIR, unlabeled_preprocessed_folder
from nnunet_ext.planners import plan_and_preprocess as pp

DATASET_ID = 801
DATASET_NAME = "Dataset801_SynthSemi"
LABELED = [f"lab_{i:03d}" for i in range(4)]
UNLABELED = {"unl_000": 1.0, "unl_001": 1.0, "unl_002": 1.25}
"""Unlabeled case -> isotropic spacing in mm; the labeled cases have 1 mm, so unl_002 gets resampled."""
SIZE = 32


def _body_and_organ(seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """A noisy 'body' ball with zero background (so cropping and the -1 mask matter) and a bright 'organ' ball."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(SIZE)] * 3, indexing="ij")).astype(float)
    radius = np.sqrt(((grid - (SIZE - 1) / 2) ** 2).sum(0))
    centre = SIZE / 2 + rng.integers(-3, 4, size=3)
    organ = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(0)) < 5 + seed % 3
    body = radius < SIZE / 2 - 1
    image = np.where(body, 100 + 10 * rng.standard_normal(body.shape), 0) + 80 * organ
    return image.astype(np.float32), organ.astype(np.uint8)


def _write(array: np.ndarray, path: Path, spacing: float) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((spacing,) * 3)
    sitk.WriteImage(image, str(path))


def _make_raw_dataset(raw: Path, dataset_name: str, num_channels: int = 1, unlabeled: Dict[str, float] = UNLABELED,
                      reference: bool = True) -> Path:
    """An nnU-Net raw dataset with imagesTrUnlabeled/ and, if asked, labelsTrReference/ (DESIGN.md §3).

    The reference labels are deliberately different from anything the images suggest (an inverted organ mask), so
    reading them would change the output.
    """
    folder = raw / dataset_name
    for sub in ("imagesTr", "labelsTr", UNLABELED_IMAGES_DIR, REFERENCE_LABELS_DIR):
        (folder / sub).mkdir(parents=True)
    for i, case in enumerate(LABELED):
        image, organ = _body_and_organ(i)
        for c in range(num_channels):
            _write(image + c, folder / "imagesTr" / f"{case}_{c:04d}.nii.gz", 1.0)
        _write(organ, folder / "labelsTr" / f"{case}.nii.gz", 1.0)
    for i, (case, spacing) in enumerate(unlabeled.items()):
        image, organ = _body_and_organ(10 + i)
        for c in range(num_channels):
            _write(image + c, folder / UNLABELED_IMAGES_DIR / f"{case}_{c:04d}.nii.gz", spacing)
        if reference:
            _write((1 - organ) * 2, folder / REFERENCE_LABELS_DIR / f"{case}.nii.gz", spacing)
    if not reference:
        (folder / REFERENCE_LABELS_DIR).rmdir()
    dataset_json = {
        "channel_names": {str(c): f"T{c + 1}" for c in range(num_channels)},
        "labels": {"background": 0, "organ": 1},
        "numTraining": len(LABELED),
        "numUnlabeled": len(unlabeled),
        "file_ending": ".nii.gz",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return folder


@pytest.fixture(scope="module")
def nnunet_dirs(tmp_path_factory):
    """nnU-Net's three folders in a temporary directory, set for this process and the workers it spawns."""
    root = tmp_path_factory.mktemp("nnunet")
    dirs = {name: root / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    with pytest.MonkeyPatch.context() as mp:
        for name, path in dirs.items():
            path.mkdir()
            mp.setenv(name, str(path))
        mp.setenv("nnUNet_def_n_proc", "2")
        mp.setenv("nnUNet_n_proc_DA", "0")  # the CPU setting that nnU-Net 2.8.1's planner alone cannot handle
        yield dirs


@pytest.fixture(scope="module")
def preprocessed(nnunet_dirs) -> Path:
    """Run the command once on the synthetic dataset; returns ``nnUNet_preprocessed/<Dataset>``."""
    _make_raw_dataset(nnunet_dirs["nnUNet_raw"], DATASET_NAME)
    cli.main(["plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1", "-npfp", "1",
              "--no_pbar"])
    return nnunet_dirs["nnUNet_preprocessed"] / DATASET_NAME


def _plans(preprocessed: Path) -> dict:
    return json.loads((preprocessed / "nnUNetPlans.json").read_text())


def _folders(preprocessed: Path) -> Tuple[Path, Path]:
    data_identifier = _plans(preprocessed)["configurations"]["3d_fullres"]["data_identifier"]
    labeled = preprocessed / data_identifier
    return labeled, Path(unlabeled_preprocessed_folder(str(labeled)))


def _folder_content(folder: Path) -> Dict[str, object]:
    """Every file of a preprocessed folder: .pkl files as bytes, .b2nd files as their decoded array.

    blosc2 containers are not byte-for-byte reproducible (compression runs in several threads), so arrays are
    compared after decoding, exactly, dtype included.
    """
    import blosc2

    return {f.name: blosc2.open(str(f), mode="r")[:] if f.suffix == ".b2nd" else f.read_bytes()
            for f in sorted(folder.iterdir())}


def _assert_same_content(a: Dict[str, object], b: Dict[str, object]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        if isinstance(a[name], np.ndarray):
            assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name
        else:
            assert a[name] == b[name], name


def test_plans_keep_stock_preprocessor(preprocessed):
    plans = _plans(preprocessed)
    assert plans["configurations"]["3d_fullres"]["preprocessor_name"] == "DefaultPreprocessor"
    assert plans["experiment_planner_used"] == "ExperimentPlanner"


def test_labeled_and_unlabeled_folders_are_separate(preprocessed):
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    labeled, unlabeled = _folders(preprocessed)
    assert unlabeled.parent == labeled.parent and unlabeled.name == labeled.name + "_unlabeled"
    assert sorted(nnUNetDatasetBlosc2.get_identifiers(str(labeled))) == LABELED
    assert sorted(nnUNetDatasetBlosc2.get_identifiers(str(unlabeled))) == sorted(UNLABELED)
    assert not [p for p in preprocessed.iterdir() if ".partial_" in p.name or ".old_" in p.name]


def test_unlabeled_cases_load_with_nnunet_dataset(preprocessed):
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    _, unlabeled = _folders(preprocessed)
    target_spacing = np.array(_plans(preprocessed)["configurations"]["3d_fullres"]["spacing"])
    dataset = nnUNetDatasetBlosc2(str(unlabeled))
    for case, spacing in UNLABELED.items():
        data, seg, seg_prev, properties = dataset.load_case(case)
        assert properties["class_locations"] == {}
        assert seg_prev is None
        assert data.dtype == np.float32 and seg.dtype == np.int16
        assert data.shape[0] == 1 and seg.shape[0] == 1 and data.shape[1:] == seg.shape[1:]
        assert np.allclose(properties["spacing"], spacing)
        cropped = np.array(properties["shape_after_cropping_and_before_resampling"])
        assert cropped.max() < SIZE
        assert tuple(data.shape[1:]) == tuple(np.round(cropped * spacing / target_spacing).astype(int))
        values = set(np.unique(seg[:]).tolist())
        assert values == {0, -1}
        assert np.isfinite(data[:]).all()


def test_unlabeled_chunks_follow_nnunet_choice(preprocessed):
    import blosc2
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params

    labeled, unlabeled = _folders(preprocessed)
    patch_size = tuple(_plans(preprocessed)["configurations"]["3d_fullres"]["patch_size"])
    for folder, case in ((labeled, LABELED[0]), (unlabeled, "unl_002")):
        for suffix, itemsize in (("", 4), ("_seg", 2)):
            array = blosc2.open(str(folder / f"{case}{suffix}.b2nd"), mode="r")
            blocks, chunks = comp_blosc2_params(array.shape, patch_size, itemsize)
            assert (tuple(array.blocks), tuple(array.chunks)) == (blocks, chunks)


def test_reference_labels_are_never_read(preprocessed, nnunet_dirs):
    """Without labelsTrReference/ the unlabeled output is the same: same properties files, same arrays."""
    _, unlabeled = _folders(preprocessed)
    before = _folder_content(unlabeled)
    raw = nnunet_dirs["nnUNet_raw"] / DATASET_NAME
    moved = raw.parent / "reference_aside"
    shutil.move(str(raw / REFERENCE_LABELS_DIR), str(moved))
    try:
        pp.preprocess_unlabeled(DATASET_ID, "nnUNetPlans", ["3d_fullres"], 1, show_progress_bar=False)
    finally:
        shutil.move(str(moved), str(raw / REFERENCE_LABELS_DIR))
    _assert_same_content(_folder_content(unlabeled), before)


def test_failed_case_leaves_nothing_half_written(preprocessed, nnunet_dirs, tmp_path):
    """A case failing in a worker leaves neither the output folder nor the staging folder behind."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(str(preprocessed / "nnUNetPlans.json"))
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    good = nnunet_dirs["nnUNet_raw"] / DATASET_NAME / UNLABELED_IMAGES_DIR / "unl_000_0000.nii.gz"
    cases = {"good": [str(good)], "gone": [str(tmp_path / "gone_0000.nii.gz")]}
    output_folder = tmp_path / "out" / "nnUNetPlans_3d_fullres_unlabeled"
    output_folder.parent.mkdir()
    with pytest.raises(RuntimeError, match="gone_0000"):
        pp._write_unlabeled_folder(cases, str(output_folder), plans_manager,
                                   plans_manager.get_configuration("3d_fullres"), dataset_json, 1, False, False)
    assert list(output_folder.parent.iterdir()) == []


def test_nnunet_dataloader_samples_unlabeled_cases(preprocessed):
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    _, unlabeled = _folders(preprocessed)
    plans_manager = PlansManager(str(preprocessed / "nnUNetPlans.json"))
    configuration = plans_manager.get_configuration("3d_fullres")
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    patch_size = tuple(configuration.patch_size)
    loader = nnUNetDataLoader(nnUNetDatasetBlosc2(str(unlabeled)), 2, patch_size, patch_size,
                              plans_manager.get_label_manager(dataset_json), oversample_foreground_percent=0)
    for _ in range(3):
        batch = loader.generate_train_batch()
        assert tuple(batch["data"].shape) == (2, 1, *patch_size)
        assert set(batch["keys"]) <= set(UNLABELED)
        assert set(np.unique(np.asarray(batch["target"])).tolist()) <= {0, -1}


def test_nnunet_resenc_planner_resolves(preprocessed):
    cli.main(["plan_and_preprocess", "-d", str(DATASET_ID), "-pl", "nnUNetPlannerResEncM", "--no_pp", "-npfp", "1"])
    plans = json.loads((preprocessed / "nnUNetResEncUNetMPlans.json").read_text())
    assert plans["experiment_planner_used"] == "nnUNetPlannerResEncM"


def test_ct_window_planner_refuses_a_dataset_without_ct_channel(preprocessed):
    with pytest.raises(ValueError, match=r"Dataset801_\w+/dataset.json names no CT channel.*'T1'"):
        cli.main(["plan_and_preprocess", "-d", str(DATASET_ID), "-pl", "nnUNetPlannerCTWindow", "--no_pp",
                  "-npfp", "1"])
    assert not (preprocessed / "nnUNetPlansCTWindow.json").exists()


def test_unknown_planner_is_a_clear_error(nnunet_dirs):
    with pytest.raises(ValueError, match=r"Unknown ExperimentPlanner 'NoSuchPlanner'.*nnunet_ext\.planners"):
        cli.main(["plan_and_preprocess", "-d", str(DATASET_ID), "-pl", "NoSuchPlanner"])


def test_planner_lookup_in_nnunet_ext_and_dotted_path(monkeypatch):
    import nnunet_ext.planners
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

    class nnUNetExtTestPlanner(ExperimentPlanner):
        pass

    monkeypatch.setattr(nnunet_ext.planners, "nnUNetExtTestPlanner", nnUNetExtTestPlanner, raising=False)
    assert pp.resolve_class("nnUNetExtTestPlanner", ExperimentPlanner) is nnUNetExtTestPlanner
    dotted = "nnunetv2.experiment_planning.experiment_planners.default_experiment_planner.ExperimentPlanner"
    assert pp.resolve_class(dotted, ExperimentPlanner) is ExperimentPlanner
    with pytest.raises(ValueError, match="dotted path 'no_such_package.Planner'"):
        pp.resolve_class("no_such_package.Planner", ExperimentPlanner)
    with pytest.raises(ValueError, match="not a subclass"):
        pp.resolve_class("os.path.join", ExperimentPlanner)


def test_non_stock_preprocessor_is_rejected():
    with pytest.raises(ValueError, match="nnunetv2.preprocessing"):
        pp.check_stock_preprocessor("MyOwnPreprocessor")


@pytest.mark.parametrize("dataset_id, problem, message", [
    (802, "empty", "holds no image"),
    (803, "extra_channel", r"channel index out of range.*unl_001_0001\.nii\.gz"),
])
def test_invalid_unlabeled_folder_fails_before_any_work(nnunet_dirs, dataset_id, problem, message):
    name = f"Dataset{dataset_id}_Broken"
    folder = _make_raw_dataset(nnunet_dirs["nnUNet_raw"], name, reference=False)
    unlabeled = folder / UNLABELED_IMAGES_DIR
    if problem == "empty":
        for f in unlabeled.iterdir():
            f.unlink()
    else:
        shutil.copy(unlabeled / "unl_001_0000.nii.gz", unlabeled / "unl_001_0001.nii.gz")
    with pytest.raises(ValueError, match=message):
        cli.main(["plan_and_preprocess", "-d", str(dataset_id), "-c", "3d_fullres", "-np", "1", "-npfp", "1"])
    preprocessed = nnunet_dirs["nnUNet_preprocessed"] / name
    assert not preprocessed.exists() or not [p for p in preprocessed.iterdir() if "_unlabeled" in p.name]


def _validate(tmp_path: Path, num_channels: int, files: Dict[str, Tuple[int, float]]) -> Dict[str, List[str]]:
    """find_unlabeled_cases on a raw folder holding ``files``: name -> (size, spacing)."""
    unlabeled = tmp_path / UNLABELED_IMAGES_DIR
    unlabeled.mkdir()
    for name, (size, spacing) in files.items():
        _write(np.ones((size,) * 3, dtype=np.float32), unlabeled / name, spacing)
    dataset_json = {"channel_names": {str(c): f"T{c}" for c in range(num_channels)}, "file_ending": ".nii.gz"}
    return pp.find_unlabeled_cases(str(tmp_path), dataset_json)


def test_find_unlabeled_cases_orders_channels(tmp_path):
    cases = _validate(tmp_path, 2, {"b_0001.nii.gz": (4, 1.0), "b_0000.nii.gz": (4, 1.0),
                                    "a_0000.nii.gz": (5, 2.0), "a_0001.nii.gz": (5, 2.0)})
    assert list(cases) == ["a", "b"]
    assert [os.path.basename(f) for f in cases["b"]] == ["b_0000.nii.gz", "b_0001.nii.gz"]


def test_find_unlabeled_cases_without_folder_is_empty(tmp_path):
    assert pp.find_unlabeled_cases(str(tmp_path), {"channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}) == {}


def test_find_unlabeled_cases_names_missing_channel(tmp_path):
    with pytest.raises(ValueError, match=r"c lacks c_0001\.nii\.gz"):
        _validate(tmp_path, 2, {"c_0000.nii.gz": (4, 1.0), "d_0000.nii.gz": (4, 1.0), "d_0001.nii.gz": (4, 1.0)})


def test_find_unlabeled_cases_names_misnamed_file(tmp_path):
    with pytest.raises(ValueError, match=r"not named .*e\.nii\.gz"):
        _validate(tmp_path, 1, {"e.nii.gz": (4, 1.0)})


@pytest.mark.parametrize("second", [(5, 1.0), (4, 1.5)], ids=["size", "spacing"])
def test_find_unlabeled_cases_names_case_with_channel_geometry_mismatch(tmp_path, second):
    with pytest.raises(ValueError, match=r"differ in size, spacing.*\n  f \("):
        _validate(tmp_path, 2, {"f_0000.nii.gz": (4, 1.0), "f_0001.nii.gz": second,
                                "g_0000.nii.gz": (4, 1.0), "g_0001.nii.gz": (4, 1.0)})


def test_find_unlabeled_cases_names_unreadable_file(tmp_path):
    unlabeled = tmp_path / UNLABELED_IMAGES_DIR
    unlabeled.mkdir()
    (unlabeled / "h_0000.nii.gz").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"Cannot read the image .*h_0000\.nii\.gz"):
        pp.find_unlabeled_cases(str(tmp_path), {"channel_names": {"0": "CT"}, "file_ending": ".nii.gz"})


def test_patient_grouped_split_is_placed_where_nnunet_reads_it(nnunet_dirs):
    """A raw dataset's splits_final.json (written by converters whose cases share patients) reaches nnU-Net's
    do_split; run again over a split of the user's with other folds, the command stops before any work and
    the user's split stays."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunet_ext.splits import SPLITS_FILE, grouped_splits, leaking_patients

    name = "Dataset806_SynthSlices"
    folder = _make_raw_dataset(nnunet_dirs["nnUNet_raw"], name)
    patients = {"pa": LABELED[:2], "pb": LABELED[2:3], "pc": LABELED[3:]}
    dataset_json = {**json.loads((folder / "dataset.json").read_text()), "patients": patients}
    (folder / "dataset.json").write_text(json.dumps(dataset_json))
    grouped = grouped_splits(patients)
    (folder / SPLITS_FILE).write_text(json.dumps(grouped))
    arguments = ["plan_and_preprocess", "-d", "806", "-c", "3d_fullres", "-np", "1", "-npfp", "1", "--no_pbar"]
    cli.main(arguments)
    preprocessed = nnunet_dirs["nnUNet_preprocessed"] / name
    assert json.loads((preprocessed / SPLITS_FILE).read_text()) == grouped
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    for fold in range(3):
        trainer = nnUNetTrainer(dict(plans, continue_training=False), "3d_fullres", fold, dataset_json,
                                device=torch.device("cpu"))
        train, val = trainer.do_split()
        assert (sorted(train), sorted(val)) == (grouped[fold]["train"], grouped[fold]["val"])
        assert leaking_patients([{"train": train, "val": val}], patients) == []
    mine = [{"train": LABELED[1:], "val": LABELED[:1]}]
    (preprocessed / SPLITS_FILE).write_text(json.dumps(mine))
    fingerprint = (preprocessed / "dataset_fingerprint.json").stat().st_mtime_ns
    with pytest.raises(ValueError, match="holds other folds than the raw dataset's patient-grouped"):
        cli.main(arguments)
    assert json.loads((preprocessed / SPLITS_FILE).read_text()) == mine
    assert (preprocessed / "dataset_fingerprint.json").stat().st_mtime_ns == fingerprint


def test_find_unlabeled_cases_counts_the_channels_of_an_rgb_png(tmp_path):
    """As nnU-Net's integrity check: channels are counted after reading, so one RGB PNG is three channels."""
    from PIL import Image
    unlabeled = tmp_path / UNLABELED_IMAGES_DIR
    unlabeled.mkdir()
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(unlabeled / "rgb_0000.png")
    dataset_json = {"channel_names": {"0": "R", "1": "G", "2": "B"}, "file_ending": ".png"}
    assert {c: [os.path.basename(f) for f in fs] for c, fs in pp.find_unlabeled_cases(str(tmp_path),
                                                                                      dataset_json).items()} \
        == {"rgb": ["rgb_0000.png"]}
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(unlabeled / "grey_0000.png")
    with pytest.raises(ValueError, match=r"grey lacks grey_0001\.png, grey_0002\.png \(its files grey_0000\.png "
                                         r"hold 1 channel\(s\), dataset\.json declares 3\)"):
        pp.find_unlabeled_cases(str(tmp_path), dataset_json)
