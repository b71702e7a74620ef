"""Correlation: query languages (EQL; CorQL next) compiled to one logical plan, and the
executors that run it over the store."""
