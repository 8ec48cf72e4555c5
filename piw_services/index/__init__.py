"""index: renders the www tree's pages (simple index, project pages, JSON) from the database."""
