"""Line-oriented ``<key> <value>`` files (scp, key lists) as the split/merge helpers read them."""

from __future__ import annotations

from pathlib import Path


class ScpError(ValueError):
    """A bad scp/key file or split/merge request; the message names the file and the fix."""


def read_key_lines(path: str | Path) -> list[tuple[str, str]]:
    """``(key, line)`` for every line of ``path``; the key is the first whitespace-separated word.

    Blank lines and duplicate keys are errors (keys name utterances and must be unique).
    """
    path = Path(path)
    if not path.is_file():
        raise ScpError(f"{path} not found")
    out: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            words = line.split()
            if not words:
                raise ScpError(f"{path}:{n}: empty line; remove it")
            key = words[0]
            if key in seen:
                raise ScpError(f"{path}:{n}: duplicate key '{key}' (also on line {seen[key]})")
            seen[key] = n
            out.append((key, line))
    return out


def expand_job_template(template: str, nj: int) -> list[str]:
    """``out.JOB.scp`` -> ``[out.1.scp, ..., out.<nj>.scp]``."""
    if "JOB" not in template:
        raise ScpError(f"with --nj the file name must contain JOB, got '{template}'")
    if nj < 1:
        raise ScpError(f"--nj must be >= 1, got {nj}")
    return [template.replace("JOB", str(i)) for i in range(1, nj + 1)]


def job_files(names: list[str], nj: int | None, what: str) -> list[str]:
    """The per-job file names of a ``--nj N <name.JOB>`` call, or ``names`` as given without --nj."""
    if nj is None:
        return names
    if len(names) != 1:
        raise ScpError(f"with --nj give exactly one {what} name containing JOB")
    return expand_job_template(names[0], nj)
