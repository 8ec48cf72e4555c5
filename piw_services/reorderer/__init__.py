"""The reorderer: PyPI's out-of-order changelog in, a converged catalog and ordered events out."""
