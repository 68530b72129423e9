# Provenance (analysis/core/provenance.py): the code, software and config behind this results
# directory. Rerun when the git state, the installed packages or the config (without execution
# settings) change: their digests are params (helpers in common.smk).


rule versions:
    """Git state, software versions and config digest of this results directory."""
    output:
        paths.versions,
    params:
        git=code_version,
        environment=environment_version,
        config_sha256=config_version,
    log:
        paths.logs.versions,
    conda:
        "../../envs/friends.yaml"
    shell:
        "python -m analysis.core.provenance {output:q} --git {params.git:q} "
        "--config-sha256 {params.config_sha256:q} 2> {log:q}"
