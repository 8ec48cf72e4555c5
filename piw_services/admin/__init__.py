"""The admin service: the operators' only door (remove, skip, rebuild, add, rebuild_pages).

What the operators' commands share with the service is here, so they need not import it."""

#: The parts of the site piwheels' ``piw-rebuild`` rewrites (its rebuild/__init__.py), with
#: ``index`` as piwheels spells "both" (a project's simple page and project page).
PAGE_PARTS = ("home", "search", "project", "both")
PAGE_PART_ALIASES = {"index": "both"}
