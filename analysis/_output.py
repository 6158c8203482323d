"""The output folder of `agentsweep report` and `agentsweep aggregate`: always a folder, never stale.

Each command records the files it wrote in `MANIFEST` inside the folder; the next run into the same folder
removes the files of the earlier run that it did not write again (a report without `--curves` after one with
them keeps no `frontier.csv`). Files the commands never wrote are left alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["MANIFEST", "finish_folder", "open_folder"]

MANIFEST = ".agentsweep-files"
"""Names of the files the last run wrote into the folder, one a line."""


def open_folder(path: str | Path) -> Path:
    """The output folder, created if missing; ValueError when `path` names something that is not a folder."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: name a folder (it is created when missing)")
    out.mkdir(parents=True, exist_ok=True)
    return out


def finish_folder(out: Path, written: Iterable[Path]) -> None:
    """Delete what the earlier run wrote and this one did not, then record this run's files."""
    names = sorted({Path(p).name for p in written})
    manifest = out / MANIFEST
    if manifest.is_file():
        for stale in set(manifest.read_text().split("\n")) - set(names) - {"", MANIFEST}:
            target = out / stale
            if target.parent == out and target.is_file():  # only plain names inside the folder
                target.unlink()
    manifest.write_text("\n".join(names) + "\n")
