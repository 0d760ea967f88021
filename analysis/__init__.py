"""Analysis of cope run directories: loading, tables (significance tests and plots to come)."""
