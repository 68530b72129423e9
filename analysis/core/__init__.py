"""Shared foundations of every stage: errors and the command-line wrapper, file I/O, config and
samples handling, provenance. Imports nothing else from ``analysis``."""
