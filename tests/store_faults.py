"""Stores that cannot be written, made for real: a tiny tmpfs that fills up, a read-only directory.

    with tiny_volume(tmp_path / "vol") as volume:     # a 2 MiB tmpfs (root only; else the test is skipped)
        filler = fill(volume)                          # no byte left
        filler.unlink()                                # space again
    with read_only(directory) as made_writable:        # a read-only bind mount as root, chmod otherwise
        ...
        made_writable()

Mounting needs root with CAP_SYS_ADMIN: where it is not permitted the test is skipped, saying why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

__all__ = ["fill", "read_only", "tiny_volume"]


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({done.stderr.strip() or done.returncode}): needs root with CAP_SYS_ADMIN")


def _unmount(path: Path) -> None:
    # Lazy: a connection a test left open must not keep the mount (and the test's tmp dir) busy.
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@contextlib.contextmanager
def tiny_volume(path: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` for the duration."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root: the full-disk test runs where the suite runs as root (CI)")
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        _unmount(path)


def fill(volume: Path) -> Path:
    """Write a file into `volume` until not one more byte fits; returns it (unlink it to free the space)."""
    filler = volume / "filler"
    with open(filler, "wb", buffering=0) as out:
        for chunk in (1 << 16, 1 << 12, 1):  # big pieces first, then down to the last byte
            try:
                while True:
                    out.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[Callable[[], None]]:
    """`directory` and what is in it read-only for this process; call the yielded function to undo it.

    As root, file modes do not stop writes, so the directory is bind-mounted read-only over itself.
    """
    if os.geteuid() == 0:
        _mount("--bind", str(directory), str(directory))
        try:
            _mount("-o", "remount,bind,ro", str(directory))

            def writable() -> None:
                subprocess.run(["mount", "-o", "remount,bind,rw", str(directory)], check=True)

            yield writable
        finally:
            _unmount(directory)
        return
    modes = {p: p.stat().st_mode for p in [directory, *directory.iterdir()]}
    for p in modes:
        p.chmod(0o555 if p.is_dir() else 0o444)

    def restore() -> None:
        for p, mode in modes.items():
            p.chmod(mode)

    try:
        yield restore
    finally:
        restore()
