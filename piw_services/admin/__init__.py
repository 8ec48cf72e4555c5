"""The admin service: the operators' only door (remove, skip, rebuild, add)."""
