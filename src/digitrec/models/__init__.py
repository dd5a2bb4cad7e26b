"""The architectures and their registry: `create_model(name, **kwargs)`, `list_models()`.

Importing this package imports every architecture module, which registers its builders
(`digitrec.models.registry`). `digitrec.models.inputs` says how pixels become model inputs and
`digitrec.models.checkpoint` how a model is saved and loaded, self-described.
"""

from digitrec.models import baselines, cnn, residual  # noqa: F401  (registers the builders)
from digitrec.models.registry import create_model, list_models, model_description, register_model

__all__ = ["create_model", "list_models", "model_description", "register_model"]
