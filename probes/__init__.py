"""Linear probes trained on activations read from an interp HDF5 store.

``run_probes(cache, labels=[...])`` trains batched logistic / ridge probes for every selected (step, site), with
control tasks and an optional random-weights baseline; see :mod:`probes.run`.
"""

from probes.run import ProbeConfig, ProbeResults, run_probes

__all__ = ["ProbeConfig", "ProbeResults", "run_probes"]
