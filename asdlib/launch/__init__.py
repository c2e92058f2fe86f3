"""Kaldi/ESPnet-style job launchers (``utils/local.sh``, ``utils/slurm.sh``) and scp split/merge helpers.

A launcher is called as ``$cmd [--opt value ...] [JOB=1:N] <log> <command> [args ...]`` (docs/design.md §6).
Both back ends share :mod:`asdlib.launch.cli` (argument parsing) and :mod:`asdlib.launch.jobs`
(per-job task script, logs, status files, rerun of failed jobs, failure report); they differ only
in how the task script is started: local processes or one ``sbatch --wait`` array.
"""
