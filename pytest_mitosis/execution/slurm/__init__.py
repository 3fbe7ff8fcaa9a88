"""The Slurm executor: trials as jobs of one array.

:mod:`.cli` is the only place that runs Slurm's commands (``sbatch``, ``scontrol``, ``sacct``,
``scancel``). No pytest import.
"""
