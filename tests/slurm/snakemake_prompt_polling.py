"""`python -m snakemake` with the SLURM executor plugin's two fixed waits taken out, for the
test cluster's runs whose waits test nothing (the dress rehearsal, a bug that fails once).

The plugin (2.6) sleeps 5 s before every `sbatch` and, after each status check that sees no
job finish, waits 10 s longer before the next one (up to 180 s): sensible on a cluster whose
jobs run for hours, but on the test cluster, whose jobs take seconds, they add minutes to a
40-job study without testing anything. Here the pause before `sbatch` is gone and the
interval stays at the profile's `slurm-init-seconds-before-status-checks`. Submission, the
sbatch flags, status from `sacct` and everything else are the plugin's own; the preemption
test (tests/test_slurm.py) runs it exactly as shipped.
"""

import sys
import types

import snakemake_executor_plugin_slurm as plugin
from snakemake.cli import main


def _unpaused_time():
    """The plugin's ``time`` module, but for ``sleep``."""
    import time

    shim = types.ModuleType("time")
    shim.__dict__.update({k: getattr(time, k) for k in dir(time) if not k.startswith("__")})
    shim.sleep = lambda seconds: None
    return shim


def _no_back_off():
    """The interval between status checks as the plugin keeps it, never raised above the
    first one (the plugin's back-off writes a longer one after each check that saw no job
    finish)."""
    kept = plugin.Executor.next_seconds_between_status_checks  # the base class's property

    def keep_first(self, seconds):
        first = getattr(self.workflow.executor_settings, "init_seconds_before_status_checks", None)
        kept.fset(self, min(seconds, first) if first else seconds)

    return property(kept.fget, keep_first)


plugin.time = _unpaused_time()
plugin.Executor.next_seconds_between_status_checks = _no_back_off()

if __name__ == "__main__":
    sys.exit(main())
