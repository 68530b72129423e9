"""From events to skims: the toy NanoAOD generator, the coffea preselection, corrections and the
friend trees with event weights. Imports only ``analysis.core``."""
