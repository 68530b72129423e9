"""H->tautau machine-learning analysis workflow: one module per Snakemake stage."""

__version__ = "0.1.0"
