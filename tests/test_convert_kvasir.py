"""``nnunet_ext convert kvasir`` on 10 real Kvasir-SEG images (linked, not copied), with and without gaze
pseudo-masks, plus the errors for broken inputs."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import converter
from nnunet_ext import gaze
from nnunet_ext.dataset_conversion.held_out import split_ids
from nnunet_ext.gaze import gaze_labels


@pytest.fixture(scope="module")
def release(shared_data, tmp_path_factory):
    """A Kvasir-SEG-shaped folder of symlinks to the 10 smallest real images (by CSV area) and their masks."""
    source = shared_data / "Kvasir-SEG"
    csv_path = shared_data / "GazeMedSeg" / "kvasir_fixation.csv"
    if not (source / "images").is_dir() or not csv_path.is_file():
        pytest.skip(f"real-data test skipped: {source}/images or {csv_path} is absent")
    fixations, sizes = gaze.read_gaze_csv(str(csv_path))
    ids = sorted(sorted(fixations, key=lambda k: (sizes[k][0] * sizes[k][1], k))[:10])
    folder = tmp_path_factory.mktemp("kvasir")
    for sub in ("images", "masks"):
        (folder / sub).mkdir()
        for i in ids:
            (folder / sub / f"{i}.jpg").symlink_to(source / sub / f"{i}.jpg")
    return {"folder": folder, "ids": ids, "csv": csv_path, "source": source}


convert = converter("kvasir")


def names(folder: Path):
    return sorted(p.name for p in folder.iterdir())


def expected_split(ids, fraction, seed):
    """The documented rule, restated: round(fraction * N) positions of default_rng(seed).permutation."""
    ordered = sorted(ids)
    positions = np.random.default_rng(seed).permutation(len(ordered))[:int(round(fraction * len(ordered)))]
    test = sorted(ordered[p] for p in positions)
    return [i for i in ordered if i not in test], test


@pytest.fixture(scope="module")
def converted(release, tmp_path_factory):
    """The release converted without (810) and with (811) gaze, seed 0."""
    raw = tmp_path_factory.mktemp("raw")
    with pytest.MonkeyPatch.context() as mp:
        plain = convert(raw, mp, "-i", str(release["folder"]), "-d", "810", "-np", "2")
        with_gaze = convert(raw, mp, "-i", str(release["folder"]), "-d", "811", "--gaze-csv", str(release["csv"]),
                            "-np", "2")
    return {"raw": raw, "plain": raw / "Dataset810_Kvasir", "gaze": raw / "Dataset811_KvasirGaze",
            "printed": (plain, with_gaze)}


def test_layout_split_and_dataset_json_without_gaze(release, converted):
    folder = converted["plain"]
    train, test = expected_split(release["ids"], 0.2, 0)
    assert (len(train), len(test)) == (8, 2)
    assert names(folder) == ["dataset.json", "imagesTr", "imagesTs", "labelsTr", "labelsTs"]
    assert names(folder / "imagesTr") == [f"{i}_0000.png" for i in train]
    assert names(folder / "labelsTr") == [f"{i}.png" for i in train]
    assert names(folder / "imagesTs") == [f"{i}_0000.png" for i in test]
    assert names(folder / "labelsTs") == [f"{i}.png" for i in test]
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    assert dataset_json["labels"] == {"background": 0, "polyp": 1}
    assert (dataset_json["numTraining"], dataset_json["file_ending"]) == (8, ".png")
    assert dataset_json["kvasir_split"]["seed"] == 0 and "regions_class_order" not in dataset_json
    assert (dataset_json["kvasir_split"]["train"], dataset_json["kvasir_split"]["test"]) == (train, test)
    assert "gaze" not in dataset_json
    assert "8 training cases" in converted["printed"][0]


def test_images_are_lossless_rgb_and_masks_binary(release, converted):
    folder = converted["plain"]
    for i in release["ids"]:
        part = "Tr" if (folder / "imagesTr" / f"{i}_0000.png").exists() else "Ts"
        with Image.open(folder / f"images{part}" / f"{i}_0000.png") as png:
            assert png.mode == "RGB"
            written = np.array(png)
        np.testing.assert_array_equal(written, np.array(Image.open(release["source"] / "images" / f"{i}.jpg")))
        with Image.open(folder / f"labels{part}" / f"{i}.png") as png:
            assert png.mode == "L"
            mask = np.array(png)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
        grey = np.array(Image.open(release["source"] / "masks" / f"{i}.jpg").convert("L"))
        np.testing.assert_array_equal(mask, grey >= 128)


def test_gaze_mode_layout_labels_and_reference(release, converted):
    folder = converted["gaze"]
    train, test = expected_split(release["ids"], 0.2, 0)
    assert names(folder) == ["dataset.json", "imagesTr", "imagesTs", "labelsTr", "labelsTrReference", "labelsTs"]
    assert names(folder / "imagesTs") == names(converted["plain"] / "imagesTs")
    assert names(folder / "labelsTrReference") == [f"{i}.png" for i in train]
    for i in train:
        reference = np.array(Image.open(folder / "labelsTrReference" / f"{i}.png"))
        np.testing.assert_array_equal(reference, np.array(Image.open(converted["plain"] / "labelsTr" / f"{i}.png")))
        assert set(np.unique(np.array(Image.open(folder / "labelsTr" / f"{i}.png")))) <= {0, 1, 2}
    for i in test:
        np.testing.assert_array_equal(np.array(Image.open(folder / "labelsTs" / f"{i}.png")),
                                      np.array(Image.open(converted["plain"] / "labelsTs" / f"{i}.png")))
    fixations, sizes = gaze.read_gaze_csv(str(release["csv"]))
    first = train[0]
    image = np.array(Image.open(release["source"] / "images" / f"{first}.jpg").convert("RGB"))
    crf = gaze.crf_refine(image, gaze.gaze_heatmap(fixations[first], *sizes[first], 70))
    np.testing.assert_array_equal(np.array(Image.open(folder / "labelsTr" / f"{first}.png")),
                                  (crf >= 0.3).astype(np.uint8) + (crf >= 0.5))
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "gaze_level_1": [1, 2], "gaze_level_2": [2]}
    assert dataset_json["regions_class_order"] == [1, 2]
    settings = dataset_json["gaze"]
    assert settings["sigma"] == 70 and settings["thresholds"] == [0.3, 0.5]
    assert settings["levels"]["gaze_level_2"]["threshold"] == 0.5
    assert settings["crf"] == {"sxy": 80.0, "srgb": 13.0, "compat": 1.0, "iterations": 10, "unary_clip": 1e-5}
    assert "pseudo-mask Dice" in converted["printed"][1]


def test_gaze_dataset_is_valid_for_nnunet(converted):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    verify_dataset_integrity(str(converted["gaze"]), 1)
    dataset_json = json.loads((converted["gaze"] / "dataset.json").read_text())
    manager = LabelManager(dataset_json["labels"], dataset_json["regions_class_order"])
    assert manager.has_regions and manager.foreground_regions == [(1, 2), (2,)]
    ordinal = np.array([[0, 1, 2, 2, 1, 0]], dtype=np.uint8)
    regions = np.stack([np.isin(ordinal, region) for region in manager.foreground_regions]).astype(np.float32)
    back = manager.convert_probabilities_to_segmentation(regions[:, None])
    np.testing.assert_array_equal(np.asarray(back)[0], ordinal)


def test_region_labels_for_other_level_counts():
    assert gaze_labels(1) == ({"background": 0, "gaze_level_1": 1}, None)
    labels, order = gaze_labels(5)
    assert labels["gaze_level_1"] == [1, 2, 3, 4, 5] and labels["gaze_level_5"] == [5] and order == [1, 2, 3, 4, 5]


def test_split_is_stable_for_a_seed_and_changes_with_it(release, tmp_path, monkeypatch):
    assert split_ids(release["ids"], 0.2, 0) == expected_split(release["ids"], 0.2, 0)
    assert split_ids(release["ids"][::-1], 0.2, 0) == split_ids(release["ids"], 0.2, 0)
    convert(tmp_path, monkeypatch, "-i", str(release["folder"]), "-d", "812", "--seed", "0", "-np", "0")
    convert(tmp_path, monkeypatch, "-i", str(release["folder"]), "-d", "813", "--seed", "3", "-np", "0")
    seed0, seed3 = (names(tmp_path / d / "imagesTs") for d in ("Dataset812_Kvasir", "Dataset813_Kvasir"))
    assert seed0 == [f"{i}_0000.png" for i in expected_split(release["ids"], 0.2, 0)[1]]
    assert seed3 == [f"{i}_0000.png" for i in expected_split(release["ids"], 0.2, 3)[1]] and seed3 != seed0


def test_split_file(release, tmp_path, monkeypatch):
    ids = release["ids"]
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": [f"{i}.jpg" for i in ids[:6]], "test": ids[6:9]}))
    convert(tmp_path / "raw", monkeypatch, "-i", str(release["folder"]), "-d", "814", "--split-file", str(split),
            "-np", "0")
    folder = tmp_path / "raw" / "Dataset814_Kvasir"
    assert names(folder / "labelsTr") == [f"{i}.png" for i in ids[:6]]
    assert names(folder / "labelsTs") == [f"{i}.png" for i in ids[6:9]]
    split.write_text(json.dumps({"train": ids[:6], "test": ids[5:7] + ["nonexistent"]}))
    with pytest.raises(ValueError, match="not in the release: nonexistent; in both lists: " + ids[5]):
        convert(tmp_path / "raw", monkeypatch, "-i", str(release["folder"]), "-d", "815", "--split-file", str(split))
    with pytest.raises(ValueError, match="--split-file replaces"):
        convert(tmp_path / "raw", monkeypatch, "-i", str(release["folder"]), "-d", "815", "--split-file", str(split),
                "--seed", "1")


def test_recorded_split_survives_a_change_of_numpys_generator(release, converted, tmp_path, monkeypatch):
    """--split-file given an earlier dataset.json reproduces its split where a re-drawn one would differ."""
    recorded = json.loads((converted["plain"] / "dataset.json").read_text())["kvasir_split"]
    default_rng = np.random.default_rng
    monkeypatch.setattr(np.random, "default_rng", lambda seed: default_rng(seed + 1))
    convert(tmp_path, monkeypatch, "-i", str(release["folder"]), "-d", "816", "-np", "0")
    convert(tmp_path, monkeypatch, "-i", str(release["folder"]), "-d", "817", "--split-file",
            str(converted["plain"] / "dataset.json"), "-np", "0")
    redrawn = json.loads((tmp_path / "Dataset816_Kvasir" / "dataset.json").read_text())["kvasir_split"]
    assert redrawn["test"] != recorded["test"]
    assert names(tmp_path / "Dataset817_Kvasir" / "imagesTs") == [f"{i}_0000.png" for i in recorded["test"]]
    assert names(tmp_path / "Dataset817_Kvasir" / "labelsTr") == [f"{i}.png" for i in recorded["train"]]


def broken_release(release, tmp_path: Path) -> Path:
    folder = tmp_path / "broken"
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
        for i in release["ids"][:4]:
            (folder / sub / f"{i}.jpg").symlink_to(release["source"] / sub / f"{i}.jpg")
    return folder


def test_missing_masks_folder_and_image_without_mask(release, tmp_path, monkeypatch):
    folder = broken_release(release, tmp_path)
    victim = release["ids"][1]
    (folder / "masks" / f"{victim}.jpg").unlink()
    with pytest.raises(ValueError, match=f"1 image.* have no mask .*{victim}.jpg"):
        convert(tmp_path / "raw", monkeypatch, "-i", str(folder), "-d", "816")
    for mask in (folder / "masks").iterdir():
        mask.unlink()
    (folder / "masks").rmdir()
    with pytest.raises(ValueError, match="has no masks/ folder"):
        convert(tmp_path / "raw", monkeypatch, "-i", str(folder), "-d", "816")


def test_gaze_training_images_need_no_true_mask(release, tmp_path, monkeypatch):
    """Gaze pseudo-masks come from the image and the fixations alone: a training image without a mask is
    converted all the same (no labelsTrReference entry), a test image without one is an error."""
    folder = broken_release(release, tmp_path)
    ids = release["ids"][:4]
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ids[:3], "test": ids[3:]}))
    gaze_args = ["--gaze-csv", str(release["csv"]), "--split-file", str(split), "-np", "0"]
    convert(tmp_path / "raw", monkeypatch, "-i", str(folder), "-d", "819", *gaze_args)
    (folder / "masks" / f"{ids[1]}.jpg").unlink()
    printed = convert(tmp_path / "raw", monkeypatch, "-i", str(folder), "-d", "820", *gaze_args)
    complete, partial = (tmp_path / "raw" / f"Dataset{d}_KvasirGaze" for d in (819, 820))
    assert names(partial / "labelsTr") == names(complete / "labelsTr") == sorted(f"{i}.png" for i in ids[:3])
    assert names(partial / "labelsTrReference") == sorted(f"{i}.png" for i in (ids[0], ids[2]))
    for name in names(complete / "labelsTr"):
        np.testing.assert_array_equal(np.array(Image.open(partial / "labelsTr" / name)),
                                      np.array(Image.open(complete / "labelsTr" / name)))
    assert "true masks of the 2 training images that have one" in printed
    (folder / "masks" / f"{ids[3]}.jpg").unlink()
    with pytest.raises(ValueError, match=f"1 test image.* have no mask .*{ids[3]}.jpg"):
        convert(tmp_path / "raw", monkeypatch, "-i", str(folder), "-d", "821", *gaze_args)
    with pytest.raises(ValueError, match=f"2 image.* have no mask .*{ids[1]}.jpg"):
        convert(tmp_path / "raw", monkeypatch, "-i", str(folder), "-d", "821", "--split-file", str(split))


@pytest.mark.parametrize("num_processes", ["0", "2"])
def test_unreadable_image_names_the_file_and_leaves_nothing(release, tmp_path, monkeypatch, num_processes):
    folder = broken_release(release, tmp_path)
    victim = folder / "images" / f"{release['ids'][2]}.jpg"
    victim.unlink()
    victim.write_text("not a JPEG")
    raw = tmp_path / "raw"
    with pytest.raises(ValueError, match=f"{victim}: cannot be read as an image"):
        convert(raw, monkeypatch, "-i", str(folder), "-d", "817", "-np", num_processes)
    assert os.listdir(raw) == []


def test_gaze_csv_without_a_training_image(release, tmp_path, monkeypatch):
    folder = broken_release(release, tmp_path)
    csv_path = tmp_path / "gaze.csv"
    lines = release["csv"].read_text().splitlines()
    csv_path.write_text("\n".join([lines[0]] + [line for line in lines[1:] if line.startswith(release["ids"][0])]))
    with pytest.raises(ValueError, match=f"no fixations for .* training image.*{release['ids'][1]}"):
        convert(tmp_path / "raw", monkeypatch, "-i", str(folder), "-d", "818", "--gaze-csv", str(csv_path),
                "--test-fraction", "0")
    with pytest.raises(ValueError, match="need --gaze-csv"):
        convert(tmp_path / "raw", monkeypatch, "-i", str(folder), "-d", "818", "--levels", "3")


def pil_resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Independent bilinear (antialiased) resize with Pillow, per channel, as float."""
    channels = array[..., None] if array.ndim == 2 else array
    resized = [np.asarray(Image.fromarray(channels[..., c].astype(np.float32), mode="F").resize(
        (width, height), Image.BILINEAR)) for c in range(channels.shape[-1])]
    return np.stack(resized, -1) if array.ndim == 3 else resized[0]


def test_resize_to_the_paper_size(release, tmp_path, monkeypatch):
    folder = broken_release(release, tmp_path)
    convert(tmp_path / "raw", monkeypatch, "-i", str(folder), "-d", "817", "--gaze-csv", str(release["csv"]),
            "--resize", "56", "64", "--test-fraction", "0.25", "-np", "0")
    dataset = tmp_path / "raw" / "Dataset817_KvasirGaze"
    assert json.loads((dataset / "dataset.json").read_text())["resized_to"] == [56, 64]
    fixations, sizes = gaze.read_gaze_csv(str(release["csv"]))
    train, test = (names(dataset / sub) for sub in ("labelsTr", "labelsTs"))
    assert (len(train), len(test)) == (3, 1)
    for name in train + test:
        case, part = name[:-4], "Tr" if name in train else "Ts"
        image = np.array(Image.open(release["source"] / "images" / f"{case}.jpg").convert("RGB"))
        written = np.array(Image.open(dataset / f"images{part}" / f"{case}_0000.png"))
        assert written.shape == (56, 64, 3)
        assert np.abs(written - pil_resize(image, 56, 64)).mean() < 1.0
        truth = np.array(Image.open(release["source"] / "masks" / f"{case}.jpg").convert("L")) >= 128
        mask = np.array(Image.open(dataset / ("labelsTrReference" if part == "Tr" else "labelsTs") / name))
        assert mask.shape == (56, 64) and np.mean(mask == (pil_resize(truth, 56, 64) >= 0.5)) > 0.99
        if part == "Tr":
            crf = pil_resize(gaze.crf_refine(image, gaze.gaze_heatmap(fixations[case], *sizes[case], 70)), 56, 64)
            ordinal = np.array(Image.open(dataset / "labelsTr" / name))
            assert np.mean(ordinal == (crf >= 0.3).astype(np.uint8) + (crf >= 0.5)) > 0.99
    with pytest.raises(ValueError, match="--resize needs two positive numbers"):
        convert(tmp_path / "raw", monkeypatch, "-i", str(folder), "-d", "818", "--resize", "0", "64")


def test_semi_supervised_chain_on_real_rgb_images(release, tmp_path, run_command):
    """convert kvasir → make_semisupervised → plan_and_preprocess → a semi-supervised trainer, as typed: an RGB
    PNG is one file holding three channels, in imagesTrUnlabeled as in imagesTr."""
    import sys
    import torch
    folders = {name: str(tmp_path / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    cli = (sys.executable, "-m", "nnunet_ext.cli")
    run_command(*cli, "convert", "kvasir", "-i", str(release["folder"]), "-d", "820", "--resize", "64", "64",
                "-np", "0", **folders)
    run_command(*cli, "make_semisupervised", "-d", "820", "-o", "902", "--num-labeled", "2", "-np", "0", **folders)
    raw = tmp_path / "nnUNet_raw" / "Dataset902_KvasirSemi2"
    assert len(names(raw / "imagesTrUnlabeled")) == 6 and names(raw / "imagesTrUnlabeled")[0].endswith("_0000.png")
    run_command(*cli, "plan_and_preprocess", "-d", "902", "-c", "2d", "-np", "1", "-npfp", "1", **folders)
    preprocessed = tmp_path / "nnUNet_preprocessed" / "Dataset902_KvasirSemi2"
    assert len(list((preprocessed / "nnUNetPlans_2d_unlabeled").glob("*.b2nd"))) == 2 * 6
    run_command("nnUNetv2_train", "902", "2d", "all", "-tr", "nnUNetTrainerMeanTeacher_smoke", "-device", "cpu",
                **folders)
    model = tmp_path / "nnUNet_results" / "Dataset902_KvasirSemi2" / "nnUNetTrainerMeanTeacher_smoke__nnUNetPlans__2d"
    logged = torch.load(model / "fold_all" / "checkpoint_final.pth", map_location="cpu",
                        weights_only=False)["logging"]
    assert len(logged["loss_consistency"]) == 2 and all(v >= 0 for v in logged["loss_consistency"])
