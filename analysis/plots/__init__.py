"""Figures and report items from arrays and results files: no fitting or likelihood code here.
Imports ``analysis.core`` and, for selections and post-fit predictions, ``analysis.stats``."""
