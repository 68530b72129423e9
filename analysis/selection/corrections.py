"""Correction files in the correctionlib JSON format, and their evaluation.

Official-format corrections (pileup, muon, tau, b-tagging, jets: see
:mod:`analysis.selection.correction_files`) are evaluated through :class:`SchemaCorrection`, which
matches inputs by name. The toy analysis ships one correction: a tau_h identification scale
factor binned in decay mode and tau_h pT with up/down uncertainties, like the ones the CMS tau
POG publishes (``weights.tau_id_sf``, inputs pt, dm, syst); real analyses use the official file
through ``weights.corrections.tau_id`` instead.

Regenerate the shipped file with
``python -m analysis.selection.corrections config/corrections/tau_id_sf.json``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import Any

import correctionlib
import correctionlib.schemav2 as cs
import numpy as np

from analysis.core.errors import AnalysisError, cli_main
from analysis.core.io import atomic_path

#: Scale factor and its absolute uncertainty per decay mode, in bins of tau_h pT (GeV).
TAU_ID_PT_EDGES = [20.0, 25.0, 30.0, 35.0, 40.0, 50.0, 70.0, 1000.0]
TAU_ID_SF = {
    0: ([0.92, 0.93, 0.94, 0.94, 0.95, 0.96, 0.96], 0.04),
    1: ([0.90, 0.91, 0.92, 0.93, 0.93, 0.94, 0.95], 0.035),
    10: ([0.88, 0.89, 0.90, 0.91, 0.92, 0.93, 0.93], 0.045),
    11: ([0.85, 0.86, 0.87, 0.88, 0.89, 0.90, 0.90], 0.06),
}


def tau_id_correction() -> cs.Correction:
    """Build the tau_h ID scale-factor correction (inputs: pt, dm, syst in nom/up/down)."""

    def by_pt(values: list[float]) -> cs.Binning:
        return cs.Binning(
            nodetype="binning", input="pt", edges=TAU_ID_PT_EDGES, content=values, flow="clamp"
        )

    def by_syst(dm: int) -> cs.Category:
        central, unc = TAU_ID_SF[dm]
        return cs.Category(
            nodetype="category",
            input="syst",
            content=[
                cs.CategoryItem(key="nom", value=by_pt(central)),
                cs.CategoryItem(key="up", value=by_pt([v + unc for v in central])),
                cs.CategoryItem(key="down", value=by_pt([v - unc for v in central])),
            ],
        )

    return cs.Correction(
        name="tau_id_sf",
        description="Toy tau_h ID (Medium VSjet) scale factor for genuine tau_h, by DM and pT",
        version=1,
        inputs=[
            cs.Variable(name="pt", type="real", description="tau_h pT in GeV"),
            cs.Variable(name="dm", type="int", description="tau_h decay mode (0, 1, 10, 11)"),
            cs.Variable(name="syst", type="string", description="nom, up or down"),
        ],
        output=cs.Variable(name="sf", type="real"),
        data=cs.Category(
            nodetype="category",
            input="dm",
            content=[cs.CategoryItem(key=dm, value=by_syst(dm)) for dm in TAU_ID_SF],
            default=1.0,
        ),
    )


def write_corrections(path: str | os.PathLike[str]) -> None:
    """Write the shipped correction set to ``path`` (stable bytes)."""
    cset = cs.CorrectionSet(schema_version=2, corrections=[tau_id_correction()])
    with atomic_path(path) as tmp:
        tmp.write_text(cset.model_dump_json(exclude_unset=True, indent=1) + "\n")


def load_correction(
    path: str | os.PathLike[str] | None, name: str, key: str = "weights.tau_id_sf"
) -> correctionlib.highlevel.Correction:
    """Load one correction from a correctionlib JSON file (``.json`` or ``.json.gz``), with one
    clear line naming the config key (``key``) when the file or the correction is absent."""
    if not path:
        raise AnalysisError(f"config: key '{key}.file' is not set; name the correction file")
    try:
        cset = correctionlib.CorrectionSet.from_file(os.fspath(path))
    except FileNotFoundError:
        raise AnalysisError(
            f"{path}: correction file not found; fix {key}.file in the config"
        ) from None
    except Exception as err:  # correctionlib raises plain RuntimeError/ValueError for bad files
        raise AnalysisError(f"{path}: not a valid correctionlib file ({err})") from None
    names = list(cset)  # `in` on a CorrectionSet raises IndexError for an absent name
    if name not in names:
        raise AnalysisError(
            f"{path}: has no correction {name!r} (it has {sorted(names)}); "
            f"fix {key}.correction in the config"
        )
    return cset[name]


class SchemaCorrection:
    """One correction of an official-format file, evaluated by the *names* of its inputs.

    The arguments are matched to the correction's inputs by name, so that the order and the
    presence of inputs follow the file: the per-object quantities the analysis provides
    (``provides``, e.g. ``abseta`` and ``pt`` for a muon), the constants of the config
    (``constants``, e.g. ``{"wp": "Medium"}`` or ``{"year": "2018_UL"}``) and, for the one string
    input left, the systematic. An input that is none of these is a config error.

    Args:
        spec: the config entry: ``file``, ``correction``, optional ``constants``.
        key: its config key, named in errors.
        provides: names of the quantities :meth:`evaluate` will receive.
        systematic: whether one input is the systematic (a string input not otherwise given).
    """

    def __init__(
        self, spec: Mapping[str, Any], key: str, provides: Sequence[str], systematic: bool = True
    ) -> None:
        self.key = key
        self.name = spec["correction"]
        self.correction = load_correction(spec.get("file"), self.name, key)
        self.constants = dict(spec.get("constants") or {})
        inputs = [(var.name, var.type) for var in self.correction.inputs]
        self.types = dict(inputs)
        left = [n for n, _ in inputs if n not in self.constants and n not in provides]
        self.systematic_input = None
        if systematic and len(left) == 1 and self.types[left[0]] == "string":
            self.systematic_input = left.pop()
        if left:
            raise AnalysisError(
                f"{spec['file']}: correction {self.name!r} has input(s) {left} that the analysis "
                f"does not provide (it provides {sorted(provides)}); set them in "
                f"{key}.constants or check {key}.correction"
            )
        self.inputs = [n for n, _ in inputs]

    def evaluate(self, quantities: Mapping[str, Any], systematic: str | None = None) -> np.ndarray:
        """The correction's output for arrays of ``quantities`` (flat numpy) and ``systematic``."""
        args = []
        for name in self.inputs:
            if name == self.systematic_input:
                args.append(systematic)
            elif name in self.constants:
                args.append(self.constants[name])
            elif self.types[name] == "int":
                args.append(np.asarray(quantities[name], dtype=np.int32))
            else:
                args.append(np.asarray(quantities[name], dtype=np.float64))
        try:
            return np.asarray(self.correction.evaluate(*args), dtype=np.float64)
        except Exception as err:  # correctionlib: RuntimeError/IndexError for unknown keys
            raise AnalysisError(
                f"correction {self.name!r} ({self.key}): {err}; check {self.key}.constants "
                f"and {self.key}.systematics against the file"
            ) from None


def evaluate_tau_id_sf(
    correction: correctionlib.highlevel.Correction,
    pt: np.ndarray,
    decay_mode: np.ndarray,
    syst: str,
) -> np.ndarray:
    """Evaluate the tau_h ID scale factor per event for ``syst`` in {nom, up, down}."""
    return correction.evaluate(
        np.asarray(pt, dtype=np.float64), np.asarray(decay_mode, dtype=np.int32), syst
    )


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="path of the correctionlib JSON file to write")
    write_corrections(parser.parse_args(argv).output)


main = cli_main(_main)

if __name__ == "__main__":
    raise SystemExit(main())
