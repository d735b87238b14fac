"""Getting signals in: the website collector, vendor importers and pullers, resolvers."""
