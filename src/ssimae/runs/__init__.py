"""What a run folder holds: settings (InferenceSettings is torch-free), the checkpoint and a run
loaded once, config files, presets and recipes.

Public names below, by module; each is imported on first use (:func:`ssimae._lazy.lazy_exports`)."""
from ssimae._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    inference_settings="InferenceSettings",
    settings="TrainSettings RunSettings",
    fields="from_dict",
    checkpoint="Run load_run save_run load_checkpoint save_checkpoint CHECKPOINT_NAME",
    config="read_config record_invocation",
    recipes="RECIPES PRESETS recipe_settings apply_preset",
)
