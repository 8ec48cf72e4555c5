"""What the site's page writers share (the index's pages and the stats service's): the jinja
environment with the base template and the filters every page uses, and the tree writer.
A shared package: it imports no service."""
