"""The Slurm executor: each experiment's selected trials as the tasks of one Slurm job array."""
