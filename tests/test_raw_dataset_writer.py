"""RawDatasetWriter: layout, dataset.json, atomicity, and validation errors that name case, source and problem."""
import filecmp
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext.dataset_conversion.raw_dataset_writer import SOURCE_LICENCE, RawDatasetWriter

LABELS = {"background": 0, "organ": 1, "tumour": 2}
CHANNELS = {"0": "T1", "1": "T2"}


def image(shape=(6, 7, 8), spacing=(1.0, 1.0, 2.0), dtype=np.float32, value=None, seed=0):
    """A SimpleITK image of array shape ``shape`` (z, y, x); random floats or a label pattern."""
    rng = np.random.default_rng(seed)
    array = rng.normal(size=shape).astype(dtype) if value is None else np.asarray(value, dtype=dtype)
    itk = sitk.GetImageFromArray(array)
    itk.SetSpacing(spacing[:itk.GetDimension()])
    return itk


def label(shape=(6, 7, 8), values=(0, 1, 2), **kwargs):
    array = np.resize(np.asarray(values, dtype=np.uint8), shape)
    return image(shape, value=array, dtype=np.uint8, **kwargs)


def writer(raw, **kwargs):
    kwargs.setdefault("num_processes", 0)
    return RawDatasetWriter(7, "Toy", CHANNELS, LABELS, raw_root=str(raw), **kwargs)


def case(**kwargs):
    return [image(seed=1), image(seed=2)], label(**kwargs)


def test_layout_dtypes_and_dataset_json(tmp_path):
    with writer(tmp_path, extra_json={"description": "toy", "regions_class_order": None}, num_processes=2) as w:
        w.add_training_case("a", [image(dtype=np.float64), image(dtype=np.int16)], label(), source="in/a")
        w.add_training_case("b", *case(), source="in/b")
        w.add_unlabeled_case("u1", case()[0], reference_label=label(), source="in/u1")
        w.add_unlabeled_case("u2", case()[0], source="in/u2")
        w.add_test_case("t1", *case(), source="in/t1")
        w.add_test_case("t2", case()[0], source="in/t2")
    folder = tmp_path / "Dataset007_Toy"
    assert w.final_folder == str(folder)
    assert sorted(os.listdir(tmp_path)) == ["Dataset007_Toy"]
    listing = {d: sorted(os.listdir(folder / d)) for d in os.listdir(folder) if d != "dataset.json"}
    assert listing == {
        "imagesTr": ["a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz", "b_0001.nii.gz"],
        "labelsTr": ["a.nii.gz", "b.nii.gz"],
        "imagesTrUnlabeled": ["u1_0000.nii.gz", "u1_0001.nii.gz", "u2_0000.nii.gz", "u2_0001.nii.gz"],
        "labelsTrReference": ["u1.nii.gz"],
        "imagesTs": ["t1_0000.nii.gz", "t1_0001.nii.gz", "t2_0000.nii.gz", "t2_0001.nii.gz"],
        "labelsTs": ["t1.nii.gz"],
    }
    assert sitk.ReadImage(str(folder / "imagesTr/a_0000.nii.gz")).GetPixelID() == sitk.sitkFloat32
    assert sitk.ReadImage(str(folder / "imagesTr/a_0001.nii.gz")).GetPixelID() == sitk.sitkInt16
    written = sitk.ReadImage(str(folder / "labelsTr/a.nii.gz"))
    assert written.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(label()))
    assert written.GetSpacing() == (1.0, 1.0, 2.0)
    with open(folder / "dataset.json") as f:
        dataset_json = json.load(f)
    assert dataset_json == {"channel_names": CHANNELS, "labels": LABELS, "numTraining": 2, "file_ending": ".nii.gz",
                            "numUnlabeled": 2, "description": "toy", "licence": SOURCE_LICENCE,
                            "converted_by": "nnunet_ext"}
    assert (w.num_training, w.num_unlabeled, w.num_test) == (2, 2, 2)


def test_num_unlabeled_is_written_as_zero(tmp_path):
    with writer(tmp_path) as w:
        w.add_training_case("a", *case())
    with open(os.path.join(w.final_folder, "dataset.json")) as f:
        assert json.load(f)["numUnlabeled"] == 0


@pytest.mark.parametrize("num_processes", [0, 2])
def test_exception_inside_with_leaves_no_folder(tmp_path, num_processes):
    with pytest.raises(RuntimeError, match="converter crashed"):
        with writer(tmp_path, num_processes=num_processes) as w:
            for i in range(5):
                w.add_training_case(f"c{i}", *case())
            raise RuntimeError("converter crashed")
    assert os.listdir(tmp_path) == []


def _bad_channel_spacing(w):
    w.add_training_case("bad", [image(), image(spacing=(1.0, 1.1, 2.0))], label(), source="src/bad.h5")


def _bad_label_origin(w):
    lab = label()
    lab.SetOrigin((0.0, 0.0, 5.0))
    w.add_training_case("bad", case()[0], lab, source="src/bad.h5")


def _bad_label_direction(w):
    lab = label()
    lab.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    w.add_test_case("bad", case()[0], lab, source="src/bad.h5")


def _bad_label_size(w):
    w.add_training_case("bad", case()[0], label(shape=(6, 7, 9)), source="src/bad.h5")


def _bad_label_values(w):
    w.add_training_case("bad", case()[0], label(values=(0, 1, 5)), source="src/bad.h5")


def _bad_reference_values(w):
    w.add_unlabeled_case("bad", case()[0], reference_label=label(values=(0, 3)), source="src/bad.h5")


def _bad_channel_count(w):
    w.add_training_case("bad", [image()], label(), source="src/bad.h5")


def _bad_unlabeled_channel_count(w):
    w.add_unlabeled_case("bad", [image(), image(), image()], source="src/bad.h5")


def _bad_unlabeled_dimension(w):
    w.add_unlabeled_case("bad", [image(shape=(7, 8)), image(shape=(7, 8))], source="src/bad.h5")


def _bad_duplicate(w):
    w.add_test_case("first", *case(), source="src/bad.h5")


def _bad_missing_label(w):
    w.add_training_case("bad", case()[0], None, source="src/bad.h5")


@pytest.mark.parametrize("add_bad_case, problem", [
    (_bad_channel_spacing, "channel 1 geometry differs"),
    (_bad_label_origin, "label geometry differs"),
    (_bad_label_direction, "label geometry differs"),
    (_bad_label_size, "label geometry differs"),
    (_bad_label_values, "label values [5]"),
    (_bad_reference_values, "label values [3]"),
    (_bad_channel_count, "1 channel(s) given"),
    (_bad_unlabeled_channel_count, "3 channel(s) given"),
    (_bad_unlabeled_dimension, "2-D images"),
    (_bad_duplicate, "duplicate case id"),
    (_bad_missing_label, "needs a label"),
])
def test_invalid_case_raises_and_writes_nothing(tmp_path, add_bad_case, problem):
    with pytest.raises(ValueError) as error:
        with writer(tmp_path) as w:
            w.add_training_case("first", *case(), source="src/first.h5")
            add_bad_case(w)
    message = str(error.value)
    assert "src/bad.h5" in message and problem in message
    assert "'bad'" in message or "'first'" in message
    assert os.listdir(tmp_path) == []


def test_geometry_within_tolerance_is_accepted_and_unified(tmp_path):
    lab = label(spacing=(1.0, 1.0, 2.0 * (1 + 2e-5)))
    lab.SetOrigin((1e-6, 0.0, 0.0))
    with writer(tmp_path) as w:
        w.add_training_case("a", case()[0], lab)
    written = sitk.ReadImage(os.path.join(w.final_folder, "labelsTr", "a.nii.gz"))
    assert written.GetSpacing() == (1.0, 1.0, 2.0) and written.GetOrigin() == (0.0, 0.0, 0.0)


def test_large_label_values_are_written_as_uint16(tmp_path):
    labels = {"background": 0, "many": 300}
    with RawDatasetWriter(8, "Big", {"0": "CT"}, labels, raw_root=str(tmp_path), num_processes=0) as w:
        w.add_training_case("a", [image()], image(value=np.resize([0, 300], (6, 7, 8)), dtype=np.uint16))
    assert sitk.ReadImage(os.path.join(w.final_folder, "labelsTr", "a.nii.gz")).GetPixelID() == sitk.sitkUInt16


def test_existing_folder_needs_overwrite(tmp_path):
    with writer(tmp_path) as w:
        w.add_training_case("old", *case())
    with pytest.raises(ValueError, match="already exists"):
        with writer(tmp_path) as w:
            w.add_training_case("new", *case())
    assert os.listdir(os.path.join(w.final_folder, "labelsTr")) == ["old.nii.gz"]
    with writer(tmp_path, overwrite=True) as w:
        w.add_training_case("new", *case())
    assert os.listdir(os.path.join(w.final_folder, "labelsTr")) == ["new.nii.gz"]
    assert os.listdir(tmp_path) == ["Dataset007_Toy"]


def test_refuses_a_second_dataset_with_the_same_id(tmp_path):
    (tmp_path / "Dataset007_Other").mkdir()
    with pytest.raises(ValueError, match="Dataset007_Other"):
        with writer(tmp_path, overwrite=True):
            pass
    assert os.listdir(tmp_path) == ["Dataset007_Other"]


def test_no_training_case_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no training case"):
        with writer(tmp_path) as w:
            w.add_test_case("t", *case())
    assert os.listdir(tmp_path) == []


def test_configuration_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("nnUNet_raw", raising=False)
    with pytest.raises(ValueError, match="nnUNet_raw"):
        RawDatasetWriter(1, "X", CHANNELS, LABELS)
    with pytest.raises(ValueError, match="numTraining"):
        writer(tmp_path, extra_json={"numTraining": 3})
    with pytest.raises(ValueError, match="channel_names"):
        RawDatasetWriter(1, "X", {"1": "T1"}, LABELS, raw_root=str(tmp_path))
    with pytest.raises(ValueError, match="background"):
        RawDatasetWriter(1, "X", CHANNELS, {"organ": 1}, raw_root=str(tmp_path))
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "from_env"))
    assert RawDatasetWriter(1, "X", CHANNELS, LABELS).final_folder == str(tmp_path / "from_env" / "Dataset001_X")


def test_write_failure_in_worker_names_the_case(tmp_path):
    """PNG cannot hold float32 pixels: the worker's error comes back as a ValueError naming the case."""
    two_d = RawDatasetWriter(9, "Flat", {"0": "gray"}, LABELS, file_ending=".png", raw_root=str(tmp_path),
                             num_processes=1)
    with pytest.raises(ValueError, match=r"case 'a' \(source: src/a.png\): writing failed"):
        with two_d as w:
            w.add_training_case("a", [image(shape=(7, 8))], label(shape=(7, 8)), source="src/a.png")
    assert os.listdir(tmp_path) == []


def test_rgb_png_counts_as_three_channels_and_files_are_copied_verbatim(tmp_path):
    rgb = sitk.Compose([image(shape=(7, 8), dtype=np.uint8, value=np.full((7, 8), v)) for v in (10, 20, 30)])
    rgb_channels = {"0": "R", "1": "G", "2": "B"}
    with RawDatasetWriter(10, "Rgb", rgb_channels, LABELS, file_ending=".png", raw_root=str(tmp_path / "a"),
                          num_processes=0) as first:
        first.add_training_case("x", [rgb], label(shape=(7, 8)))
    source_image = os.path.join(first.final_folder, "imagesTr", "x_0000.png")
    source_label = os.path.join(first.final_folder, "labelsTr", "x.png")
    with RawDatasetWriter(10, "Rgb", rgb_channels, LABELS, file_ending=".png", raw_root=str(tmp_path / "b"),
                          num_processes=0) as second:
        second.add_training_case_from_files("x", [source_image], source_label)
        second.add_unlabeled_case_from_files("y", [source_image])
        with pytest.raises(ValueError, match="does not end with the dataset's file ending"):
            second.add_test_case_from_files("z", [source_image.replace(".png", ".nii.gz")])
    copy = os.path.join(second.final_folder, "imagesTr", "x_0000.png")
    assert filecmp.cmp(source_image, copy, shallow=False)
    assert filecmp.cmp(source_label, os.path.join(second.final_folder, "labelsTr", "x.png"), shallow=False)
    assert sitk.ReadImage(copy).GetNumberOfComponentsPerPixel() == 3


def test_training_case_reference_label_for_weak_labels(tmp_path):
    images, pseudo = case(values=(0, 1))
    truth = label(values=(1, 0, 2))
    with writer(tmp_path) as w:
        w.add_training_case("weak", images, pseudo, source="weak.h5", reference_label=truth)
    written = sitk.ReadImage(os.path.join(w.final_folder, "labelsTrReference", "weak.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(truth))
    assert written.GetSpacing() == images[0].GetSpacing()

    bad = label(values=(0, 9))
    with pytest.raises(ValueError, match="'weak2'.*reference label.*9"):
        with writer(tmp_path / "second") as w:
            w.add_training_case("weak2", *case(), source="weak2.h5", reference_label=bad)
    assert not (tmp_path / "second").exists() or not any((tmp_path / "second").iterdir())
