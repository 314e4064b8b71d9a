"""Training of candidate models."""
