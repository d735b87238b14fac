"""The dashboard: server-rendered pages (Jinja2 + htmx) under /app, sign-in with sessions."""
