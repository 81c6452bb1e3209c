"""Export a run to the field's analysis tools (Optuna storages for optuna-dashboard)."""
