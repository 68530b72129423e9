# Provenance (analysis/core/provenance.py): the software versions behind this results directory.


rule versions:
    """Software versions behind this results directory (reproducibility record)."""
    output:
        paths.versions,
    log:
        paths.logs.versions,
    conda:
        "../../envs/friends.yaml"
    shell:
        "python -m analysis.core.provenance {output:q} 2> {log:q}"
