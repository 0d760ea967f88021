"""Reading what runs wrote, with nothing beyond cope's own dependencies (the analysis extra
and `cope view` both build on it).

- `runs`: find and load run directories (finished or not), their cells, labels and summaries;
- `method_defaults`: what a method is at its defaults, and a run's variant of it;
- `pareto`: the accuracy-cost frontier and the cost of closing the small-to-large gap;
- `intervals`: the Wilson interval of an accuracy.
"""
