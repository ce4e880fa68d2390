"""The core engine: the scheduler fires due instants, workers claim and run them (light
in the worker's event loop, heavy in a child process: `tiers`), and the committer records
their ends in group commits."""
