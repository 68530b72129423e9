"""The classifier: network, training (cross entropy and uncertainty-aware), diagnostics, Taylor
ranking and score injection. Imports only ``analysis.core``."""
