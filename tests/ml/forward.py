"""An independent forward pass of a saved model in numpy: the expected scores of the ml tests.

Reads the model file's payload itself (not through ``analysis.ml.network.load_model``),
standardises with the stored mean and std, applies the Linear layers of the state dict with the
stored activation in between, and a softmax, all in float64.
"""

from __future__ import annotations

import os

import numpy as np
import torch

ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
}


def numpy_scores(model_path: str | os.PathLike[str], inputs: np.ndarray) -> np.ndarray:
    """Softmax scores of raw ``inputs`` (events x features) by the model saved at ``model_path``."""
    payload = torch.load(model_path, map_location="cpu", weights_only=True)
    state = {name: value.double().numpy() for name, value in payload["state_dict"].items()}
    activation = ACTIVATIONS[payload["architecture"]["activation"]]
    mean, std = payload["mean"].double().numpy(), payload["std"].double().numpy()
    values = (np.asarray(inputs, np.float64) - mean) / std
    layers = sorted({int(name.split(".")[0]) for name in state})
    for position, layer in enumerate(layers):
        values = values @ state[f"{layer}.weight"].T + state[f"{layer}.bias"]
        if position < len(layers) - 1:
            values = activation(values)
    values = np.exp(values - values.max(axis=1, keepdims=True))
    return values / values.sum(axis=1, keepdims=True)
