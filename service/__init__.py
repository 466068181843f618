"""Control plane for arrowshm (issue 4): FastAPI app, reaper, metrics."""
