"""The service's HTTP side: the FastAPI app, its routers, request bodies, errors and request limits."""
