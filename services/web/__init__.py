"""The FastAPI front: app factory, thin routers, dependencies, Jinja2 pages and static files."""
