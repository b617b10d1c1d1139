"""Mistakes a user makes on the command line end in one line ``nnunet_ext <command>: error: <message>`` and exit
status 1; an error a library runs into keeps its traceback."""
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

NNUNET_EXT = (sys.executable, "-m", "nnunet_ext.cli")


def failing(*args: str, **env: str) -> subprocess.CompletedProcess:
    import os
    result = subprocess.run([*NNUNET_EXT, *args], capture_output=True, encoding="utf-8", errors="replace",
                            env=dict(os.environ, **env))
    assert result.returncode != 0, result.stdout
    return result


def one_line_error(result: subprocess.CompletedProcess, command: str, *fragments: str) -> None:
    """Exit status 1 and, on stderr, after any progress bar, one line naming the command and the problem."""
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if "error" in line]
    assert result.returncode == 1 and errors == lines[-1:], result.stderr
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith(f"nnunet_ext {command}: error: "), lines[-1]
    assert all(fragment in lines[-1] for fragment in fragments), lines[-1]


def write_label(path, array) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))


def test_a_wrong_folder(tmp_path):
    one_line_error(failing("convert", "la", "-i", str(tmp_path / "nowhere"), "-d", "801"), "convert la",
                   str(tmp_path / "nowhere"), "does not exist")


def test_a_missing_file(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    write_label(tmp_path / "ref" / "case_1.nii.gz", np.zeros((4, 4, 4), np.uint8))
    one_line_error(failing("evaluate", "-ref", str(tmp_path / "ref"), "-pred", str(tmp_path / "pred")), "evaluate",
                   "case_1.nii.gz")


def test_bad_label_values(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    write_label(tmp_path / "ref" / "case_1.nii.gz", np.ones((4, 4, 4), np.uint8))
    write_label(tmp_path / "pred" / "case_1.nii.gz", np.full((4, 4, 4), 0.5, np.float32))
    one_line_error(failing("evaluate", "-ref", str(tmp_path / "ref"), "-pred", str(tmp_path / "pred")), "evaluate",
                   "case_1.nii.gz", "non-integer")


def test_an_unknown_dataset(tmp_path):
    folders = {name: str(tmp_path / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for folder in folders.values():
        (tmp_path / folder).mkdir()
    one_line_error(failing("plan_and_preprocess", "-d", "555", "-c", "2d", **folders), "plan_and_preprocess",
                   "555")


def test_a_file_no_reader_opens(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    for folder in ("ref", "pred"):
        (tmp_path / folder / "case_1.nii.gz").write_bytes(b"not a NIfTI file")
    result = failing("evaluate", "-ref", str(tmp_path / "ref"), "-pred", str(tmp_path / "pred"), "-np", "1")
    one_line_error(result, "evaluate", "case_1.nii.gz", "none of nnU-Net's readers opens it")


def test_an_error_inside_a_library_keeps_its_traceback(tmp_path, monkeypatch):
    """A ValueError raised inside numpy (not by us) is not turned into a one-line message."""
    from nnunet_ext.cli import main
    from nnunet_ext.evaluation import folders
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    for folder in ("ref", "pred"):
        (tmp_path / folder / "case_1.nii.gz").write_bytes(b"not a NIfTI file")
    monkeypatch.setattr(folders, "read_segmentation", np.load)
    with pytest.raises(ValueError, match="pickled"):
        main(["evaluate", "-ref", str(tmp_path / "ref"), "-pred", str(tmp_path / "pred"), "-np", "1"])


@pytest.mark.parametrize("args", [("convert", "la", "-d", "801"), ("evaluate", "-ref", "x")])
def test_argument_errors_stay_argparse_ones(args):
    result = failing(*args)
    assert result.returncode == 2 and "error: the following arguments are required" in result.stderr
