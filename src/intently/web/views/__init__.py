"""Dashboard views: each module validates a page's input, calls services, renders a template."""
