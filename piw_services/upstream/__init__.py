"""The upstream watcher: polls upstream's changelog and hands raw rows to the reorderer."""
