"""The stats service: downloads, searches, builder and master health, and their pages."""
