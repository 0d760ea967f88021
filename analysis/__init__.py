"""Analysis of cope run directories.

Runs are found and loaded by `cope.results` (runs, cells, labels, the Pareto frontier).

- `stats`: McNemar's exact test, Wilson intervals, paired bootstrap, Holm, mean ± sd;
- `significance`: every run against each baseline across a sweep;
- `stages`: per-stage accuracy, calibration of consensus, error propagation;
- `tables`: the paper's tables with ours beside them (`published`: the paper's numbers);
- `plots`: figures; `report`: all of it, `python -m analysis.report RUNS_DIR --out OUT_DIR`;
- `wandb_offline`: W&B offline run files, read back as runs.
"""
