"""hydra/launcher=slurm: submitit's SLURM launcher, which first refuses what would go wrong
on the cluster (cope.launch_checks) with nothing submitted, and whose jobs requeued at their
time limit (or on preemption) continue their runs as resume=true."""

from __future__ import annotations

from collections.abc import Sequence

from cope.launch_checks import check_shared_cache, check_slurm, refused_before_submitting

try:  # Hydra imports every plugin module at start-up, with or without cope[slurm]
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
except ImportError:  # pragma: no cover - the slurm extra is not installed
    SlurmLauncher = None

if SlurmLauncher is not None:
    class CheckedSlurmLauncher(SlurmLauncher):
        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
            with refused_before_submitting():
                check_shared_cache(self.config, "slurm")
                check_slurm(self.params)
            return super().launch(job_overrides, initial_job_idx)

        def checkpoint(self, sweep_overrides: Sequence[str], *args, **kwargs):
            """A job SLURM signals before its time limit, or preempts, is requeued by
            submitit with what this returns: the same cell, continuing its run."""
            kept = [o for o in sweep_overrides if not o.lstrip("+~").startswith("resume=")]
            return super().checkpoint([*kept, "resume=true"], *args, **kwargs)
