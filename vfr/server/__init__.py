"""`vfr serve`: the HTTP search service (FastAPI on uvicorn) over the library API (`vfr.Engine`).

settings.py (limits and switches) · auth.py (keys → who is calling, which collections) · models.py (the
API's request and response shapes) · app.py (routes) · middleware.py (access log, body limit, metrics) ·
metrics.py (Prometheus) · static/ (the search page: plain HTML, CSS and JS).
"""
