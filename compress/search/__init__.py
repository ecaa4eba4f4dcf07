"""`compress search`: find the recipe values that make the fastest or smallest model
within an accuracy budget (Optuna, multi-objective, resumable; see `command`)."""
