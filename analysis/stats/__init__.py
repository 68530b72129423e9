"""Statistics: histograms, the pyhf workspace, fits and their typed results, pulls, impacts,
scans, significance and limits. Imports only ``analysis.core``."""
