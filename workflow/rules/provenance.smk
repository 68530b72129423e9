# Reproducibility record: the software versions behind this results directory.
rule versions:
    """Software versions behind this results directory (reproducibility record)."""
    output:
        f"{RESULTS}/versions.json",
    log:
        f"{LOGS}/versions.log",
    conda:
        "../../envs/friends.yaml"
    shell:
        "python -m analysis.core.provenance {output:q} 2> {log:q}"
