"""`cope view`: runs, problems, stages and sweeps in a local page, or a static site.

- `records`: tolerant reading of run directories, re-read when they change;
- `questions`: question text from a run's task config;
- `payloads`: what each page shows, as plain data;
- `site`: the pages (static/ front end + data scripts), the local server and the export;
- `cli`: the command.
"""
