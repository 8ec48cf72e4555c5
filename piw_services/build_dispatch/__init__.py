"""build_dispatch: which (version, ABI) builds are needed, jobs to builders, their results."""
