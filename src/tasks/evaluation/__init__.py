"""The evaluation gate: challenger vs champion on the same held-out data, the decision, and promotion."""
