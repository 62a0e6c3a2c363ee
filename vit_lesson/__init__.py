"""vit_lesson: a Vision Transformer built from scratch, one component at a time.

The names a learner types, imported on first use (``import vit_lesson`` itself stays light)::

    import vit_lesson
    model = vit_lesson.create_model("digits")        # or ViT(get_config("tiny")), ...
    history = vit_lesson.train(model, train_set, test_set, vit_lesson.TrainConfig(epochs=10))
"""

__version__ = "0.1.0"

_EXPORTS = {
    "ViT": "model", "ViTConfig": "model", "count_parameters": "model",
    "create_model": "factory", "get_config": "registry", "list_models": "registry",
    "DistilledViT": "distill", "HybridViT": "hybrid", "HybridConfig": "hybrid",
    "TrainConfig": "train", "train": "train", "evaluate": "train", "predict": "train",
    "load_model": "checkpoint", "save_checkpoint": "checkpoint", "load_checkpoint": "checkpoint",
    "load_datasets": "data", "digits_datasets": "data",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):  # PEP 562: `vit_lesson.ViT` imports vit_lesson.model then
    if name in _EXPORTS:
        from importlib import import_module

        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vit_lesson' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
