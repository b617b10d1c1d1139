"""Worker pools fail at once with a message where multiprocessing.Pool would respawn dead workers forever."""
import os
import subprocess
import sys

import pytest

from nnunet_ext.worker_pool import result_of, spawned_pool

FROM_STDIN = """
import SimpleITK as sitk
from nnunet_ext.dataset_conversion.raw_dataset_writer import RawDatasetWriter
with RawDatasetWriter(5, "Stdin", {"0": "MR"}, {"background": 0, "a": 1}, raw_root=%r, num_processes=%d) as w:
    w.add_training_case("c", [sitk.Image(4, 4, sitk.sitkFloat32)], sitk.Image(4, 4, sitk.sitkUInt8))
print("written")
"""


@pytest.mark.parametrize("num_processes", [2, 0])
def test_a_program_read_from_stdin_fails_at_once_or_works_without_workers(tmp_path, num_processes):
    raw = tmp_path / f"raw{num_processes}"
    result = subprocess.run([sys.executable, "-"], input=FROM_STDIN % (str(raw), num_processes), cwd=tmp_path,
                            capture_output=True, encoding="utf-8", errors="replace", timeout=120)
    if num_processes:
        assert result.returncode != 0 and "worker processes cannot start from this program" in result.stderr
        assert not (raw / "Dataset005_Stdin").exists()
    else:
        assert result.returncode == 0 and "written" in result.stdout
        assert (raw / "Dataset005_Stdin" / "labelsTr" / "c.nii.gz").is_file()


def test_a_worker_that_dies_is_an_error_not_a_hang():
    with spawned_pool(1) as pool:
        with pytest.raises(RuntimeError, match="a worker process died"):
            result_of(pool.submit(os._exit, 3))
