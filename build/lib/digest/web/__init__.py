"""The HTTP face of the service: FastAPI routers, one module per audience."""
