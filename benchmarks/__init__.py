"""Benchmarks, outside the package (not in the wheel); run from a source checkout.

- :mod:`benchmarks.capture`: ``interp bench`` (capture, tracing and interventions vs the bare forward);
- :mod:`benchmarks.probes`: ``python -m benchmarks.probes`` (batched probes vs scikit-learn);
- :mod:`benchmarks.maze_cpu`: ``python -m benchmarks.maze_cpu`` (the shipped maze model on CPU, wall-clock).
"""
