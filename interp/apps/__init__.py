"""The verbs: what ``interp <verb>`` runs (:mod:`interp.cli` parses the options and calls these).

capture, evaluate (``interp eval``), demo, compare, reproduce, launch (``interp run``'s launchers) and train (the
``interp train`` dispatch between the DiT and LM trainers). They call the library (models, trace, trajectory,
interventions, experiments, store, report, tasks, lm, probes); the library never imports them.
"""
