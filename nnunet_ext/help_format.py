"""The help layout of every nnunet_ext command: argparse's, with the defaults stated."""
import argparse


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """argparse's help with each option's default appended, as ``ArgumentDefaultsHelpFormatter`` does, except
    where the help already says it or there is nothing to say (no default, a flag that is off)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        default = " ".join(map(str, action.default)) if isinstance(action.default, (list, tuple)) else action.default
        return f"{text} (default: {str(default).replace('%', '%%')})"
