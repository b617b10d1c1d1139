"""Every command's help states its defaults and concrete values, and claims nothing that does not exist."""
import contextlib
import io

import pytest

from nnunet_ext.cli import SUBCOMMANDS, main
from nnunet_ext.dataset_conversion.cli import CONVERTERS


def help_of(*command: str) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit):
        main([*command, "-h"])
    return " ".join(printed.getvalue().split())


@pytest.mark.parametrize("command", [[name] for name in SUBCOMMANDS] + [["convert", name] for name in CONVERTERS])
def test_every_help_text_prints_with_defaults_said_once(command):
    text = help_of(*command)
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "Default: 8. (default: 8)" not in text


def test_concrete_values_instead_of_references():
    assert "(default: 999)" in help_of("demo") and "GazeSup trainers get a 2-D gaze dataset" in help_of("demo")
    assert "Gaussian sigma in pixels (default: 70)" in help_of("convert", "kvasir")
    assert "Gaussian sigma in pixels (default: 50)" in help_of("convert", "nci_isbi")
    assert "(default: 70 (kvasir), 50 (nci_isbi))" in help_of("gaze")
    assert "the preset's" not in help_of("convert", "kvasir")
    converters = help_of("convert").replace("- ", "-")  # argparse may wrap a line after a hyphen
    for _, converts in CONVERTERS.values():
        assert converts in converters
    planner = help_of("plan_and_preprocess")
    assert "nnUNetPlannerCTWindow: a fixed CT window" in planner and "a name exported by" not in planner
