"""``conf/slurm.conf``: map launcher options to sbatch flags (Kaldi/ESPnet slurm.pl grammar).

Lines (``#`` starts a comment):
  ``command sbatch --export=PATH``        the submit command and its fixed flags
  ``option mem=* --mem-per-cpu $0``       flags for ``--mem <value>``; ``$0`` is the value
  ``option mem=0``                        flags for one literal value (here: none); wins over ``=*``
  ``default gpu=0``                       value used when the call does not give the option
An option given in a call (or by a default) but not described by any ``option`` line is an
error, so a typo such as ``--mme 4G`` never vanishes silently.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from asdlib.launch.cli import LaunchError

_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)=(\S+)$")


@dataclass
class SlurmConf:
    """A parsed slurm.conf."""

    path: str
    command: list[str] = field(default_factory=list)
    wildcard: dict[str, list[str]] = field(default_factory=dict)
    exact: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str) -> SlurmConf:
        if not Path(path).is_file():
            raise LaunchError(
                f"Slurm option map '{path}' not found: copy egs/TEMPLATE/conf/slurm.conf into the recipe's conf/ "
                "or pass --config <file>"
            )
        return cls.parse(Path(path).read_text(encoding="utf-8"), path)

    @classmethod
    def parse(cls, text: str, path: str) -> SlurmConf:
        conf = cls(path)
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = re.sub(r"(^|\s)#.*$", "", raw).strip()
            if not line:
                continue
            where = f"{path}:{lineno}"
            try:
                words = shlex.split(line)
            except ValueError as e:
                raise LaunchError(f"{where}: {e} in '{raw.strip()}'") from e
            kind, rest = words[0], words[1:]
            if kind == "command" and rest:
                conf.command = rest
                continue
            m = _ASSIGN.match(rest[0]) if rest else None
            if kind not in ("option", "default") or not m:
                raise LaunchError(
                    f"{where}: cannot parse '{raw.strip()}' (expected 'command <submit command>', "
                    "'option <name>=<value|*> [flags]' or 'default <name>=<value>')"
                )
            name, value = m.group(1).replace("-", "_"), m.group(2)
            if kind == "default":
                if len(rest) > 1:
                    raise LaunchError(f"{where}: 'default' takes only <name>=<value>, got '{raw.strip()}'")
                conf.defaults[name] = value
            elif value == "*":
                conf.wildcard[name] = rest[1:]
            else:
                conf.exact[(name, value)] = rest[1:]
        if not conf.command:
            raise LaunchError(f"{path}: no 'command sbatch ...' line")
        return conf

    def submit_command(self, options: dict[str, str]) -> list[str]:
        """The submit command with the flags for ``options`` (call options override defaults)."""
        values = {**self.defaults, **options}
        flags: list[str] = []
        for name, value in values.items():
            if (name, value) in self.exact:
                flags += self.exact[(name, value)]
            elif name in self.wildcard:
                flags += [w.replace("$0", value) for w in self.wildcard[name]]
            else:
                raise LaunchError(
                    f"option --{name} {value} is not described in {self.path}: add a line 'option {name}=* <sbatch flags "
                    "using $0>' or remove the option"
                )
        return [*self.command, *flags]
