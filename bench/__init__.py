"""arrowshm benchmarks (never collected by pytest). Run ``python -m bench``."""
