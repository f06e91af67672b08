"""Write a run's output directory atomically.

All files of a run are written into a hidden temporary directory beside the target, which is
then renamed into place in one step. An interrupted run leaves no half-written output
directory; an existing directory is refused unless ``overwrite=True``, in which case the old
one is swapped out only after the new one is complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from data.errors import CarryError


class OutputExistsError(CarryError):
    """The output directory exists and overwriting was not asked for."""


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Fail early (before any work) if ``out`` exists and may not be replaced."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"output directory {out} already exists; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output path {out} exists and is not a directory")


def write_output_dir(out: Path, writers: dict[str, Callable[[Path], None]], overwrite: bool = False) -> Path:
    """Create ``out`` holding one file per ``writers`` entry, all or nothing.

    Parameters
    ----------
    out:
        The final directory.
    writers:
        ``{file name: function(path) that writes that file}``.
    overwrite:
        Replace an existing ``out`` (only after every new file is written).
    """
    out = Path(out)
    check_output_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a finished run is an ordinary directory
    try:
        for name, write in writers.items():
            write(tmp / name)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
