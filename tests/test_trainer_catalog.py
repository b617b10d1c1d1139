"""``nnunet_ext trainers``: every trainer listed with its data kind and a line from its own docstring; a misspelled
name is one command away from the right one."""
import subprocess
import sys

import pytest

from nnunet_ext import trainers
from nnunet_ext.cli import main
from nnunet_ext.trainers.catalog import catalog


def test_every_trainer_is_listed_with_what_it_does_and_needs():
    rows = {name: (kind, text) for name, kind, text in catalog()}
    assert list(rows) == ["nnUNetTrainer"] + trainers.__all__
    for name, (kind, text) in rows.items():
        assert len(text) > 20 and text.endswith((".", ")")), name
        expected = ("gaze levels" if "GazeSup" in name else "labeled imagesTr" if name == "nnUNetTrainer"
                    else "two partner datasets" if "CMC" in name
                    else "labeled imagesTr, several co-registered channels" if "MAML" in name
                    else "partial labels" if "Marginal" in name or "LTUDA" in name
                    else "labeled + imagesTrUnlabeled")
        assert kind.startswith(expected), name
    assert rows["nnUNetTrainerGazeSup_pure"][1] == "GazeSup with the `pure` consistency (no feature propagation)."


def test_listing_and_looking_up_one_name(capsys):
    main(["trainers"])
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 + len(trainers.__all__) and printed[3].startswith("nnUNetTrainerDTC ")
    main(["trainers", "nnUNetTrainerUAMT"])
    assert capsys.readouterr().out.split()[0] == "nnUNetTrainerUAMT"
    with pytest.raises(ValueError, match="no trainer is called nnUNetTrainerDCT; did you mean nnUNetTrainerDTC"):
        main(["trainers", "nnUNetTrainerDCT"])


def test_misspelled_name_is_one_line_from_the_console_script():
    result = subprocess.run([sys.executable, "-m", "nnunet_ext.cli", "trainers", "nnunettrainergazesup_pur"],
                            capture_output=True, encoding="utf-8", errors="replace")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("nnunet_ext trainers: error: no trainer is called nnunettrainergazesup_pur;"
                                            " did you mean nnUNetTrainerGazeSup_pure")
