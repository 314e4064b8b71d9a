"""Use cases: one package each with the schema and model code that a served model carries."""
