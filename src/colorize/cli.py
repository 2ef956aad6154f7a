"""The ``colorize`` command: routes to a module under :mod:`colorize.commands`.

``colorize PATH...`` colorizes files and folders (:mod:`colorize.commands.colorize`); ``colorize
SUBCOMMAND`` runs ``colorize.commands.SUBCOMMAND``. ``--help`` and ``--version`` answer without
importing torch (heavy imports live inside the commands).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

SUBCOMMANDS = {
    "models": "list the registered models and the shipped weights",
    "train": "train a model from a recipe (configs/*.yaml) or options",
    "export": "export a model or checkpoint (safetensors, onnx)",
    "eval": "score models against the truth on color photos",
    "serve": "run the web app",
    "video": "colorize a video with temporally consistent colors",
    "shards": "pack a photo folder into tar shards (for training, or as colorize's input)",
}
# The extra (pyproject.toml) that installs what each subcommand needs; every one of them includes torch.
EXTRAS = {"models": "torch", "train": "train", "export": "onnx", "eval": "eval", "serve": "web", "video": "video",
          "shards": "train"}


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit 130 on a Ctrl-C no command handled itself (a second one while the photos in
    flight finish, for instance): their outputs are written whole or not at all, and no traceback is shown."""
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 (an old archive's Latin-1) is printed
        if hasattr(stream, "reconfigure"):  # escaped, not a UnicodeEncodeError after the work is done
            stream.reconfigure(errors="backslashreplace")
    formatted, warnings.formatwarning = warnings.formatwarning, format_warning  # put back for a caller in Python
    try:
        with warnings.catch_warnings():
            # Pillow reading a TIFF tag longer than it expects (Photoshop's IPTC): the photo is read, the tag kept
            # where it is (colorize.io._iptc_of); a warning per file would only alarm
            warnings.filterwarnings("ignore", message="Metadata Warning", category=UserWarning)
            return _route(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = formatted


def format_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as one line: ours (:class:`colorize.io.Notice`) as ``warning: <message>`` (``note:`` for an
    :class:`~colorize.io.ImageNote`); a library's with its category and origin for a bug report, but not the
    line of code Python's default format adds."""
    from colorize.io import Notice

    if issubclass(category, Notice):
        return f"{category.label}: {message}\n"
    return f"warning: {message} ({category.__name__}, {filename}:{lineno})\n"


def _route(argv: list[str]) -> int:
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        from colorize.commands.options import torch_installed

        try:
            return importlib.import_module(f"colorize.commands.{argv[0]}").main(argv[1:])
        except ModuleNotFoundError as e:  # an optional package, imported where it is first needed
            if not torch_installed():
                print(f"error: colorize {argv[0]} needs the torch engine: pip install 'colorize[{EXTRAS[argv[0]]}]' "
                      "(this is the light install, onnxruntime only)", file=sys.stderr)
                return 2
            if e.name is None or e.name.split(".")[0] == "colorize":
                raise  # our own bug, not an install
            print(f"error: colorize {argv[0]} needs the Python package '{e.name.split('.')[0]}', which is not "
                  f"installed: pip install 'colorize[{EXTRAS[argv[0]]}]'", file=sys.stderr)
            return 2
    if not argv:
        from colorize.commands import colorize

        colorize.parser().print_help()
        return 2
    if not argv[0].startswith("-") and not Path(argv[0]).suffix and not Path(argv[0]).exists():
        import difflib

        close = difflib.get_close_matches(argv[0], SUBCOMMANDS, n=1, cutoff=0.6)
        if close:
            print(f"error: '{argv[0]}' is neither a subcommand nor a file or folder; "
                  f"did you mean `colorize {close[0]}`?", file=sys.stderr)
            return 2
    from colorize.commands import colorize

    return colorize.main(argv)


if __name__ == "__main__":
    sys.exit(main())
