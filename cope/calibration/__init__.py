"""Calibrated cascades: pools, exact evaluation of every configuration from them, and a
finite-sample guarantee for the one chosen (`cope calibrate`, docs/calibration.md).

- pools: what one cascade structure (votes, order) makes of a pool's generations
- search: every threshold setting of a structure, evaluated at once
- targets: what is asked for, as a loss in [0, 1]
- risk: Learn-then-Test's p-values and Pareto Testing
- experiment: the chosen configuration as an experiment file
- cli: `cope calibrate`
"""
