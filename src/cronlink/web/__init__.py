"""`cronlink serve`: the HTTP service (FastAPI), a thin adapter over the core."""
