"""Analysis of cope run directories: loading, significance tests, tables, plots and a report
(`python -m analysis.report RUNS_DIR --out OUT_DIR`)."""
