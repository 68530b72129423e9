"""H->tautau machine-learning analysis: the logic behind the Snakemake workflow's rules.

Subpackages name the architecture (docs/architecture.md): ``core`` (errors, I/O, config,
provenance), ``selection`` (toy data, preselection, corrections, friend trees), ``ml`` (network,
training, scores), ``stats`` (histograms, workspace, fits and everything after), ``plots``
(figures from arrays and results). Each rule runs one module's command line (``python -m ...``).
"""

__version__ = "0.1.0"
