"""Leaderboards: the paper's tables as grids of runs, a resumable sharded grid runner, and tables/figures rendered
from run records (Markdown, LaTeX, CSV, PNG) with a column-by-column comparison against the published numbers.

* `grids`: which (dataset, shift, method, backbone, seed) cells each table needs, per profile;
* `records`: the identity of a cell's record (the run key without the split fingerprint) and an index of records;
* `locks`: one O_EXCL lock file per cell group, with stale-lock recovery;
* `runner`: expand, shard, skip finished cells, run the rest through `bench.pipeline.run`;
* `tables`: values (mean +- std over seeds, significance against DPO) and best / second best per column;
* `render`: Markdown, LaTeX and CSV files; `figures`: PNG figures (if matplotlib is installed);
* `paper`: the published numbers in `leaderboards/paper/`; `compare`: ours next to theirs;
* `command`: the `leaderboard` and `compare` subcommands of `python -m bench`.
"""
