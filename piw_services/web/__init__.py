"""The web service: HTTP serving of the www tree, download and search events."""
