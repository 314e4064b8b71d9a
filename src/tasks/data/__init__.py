"""Data-lake access, the reference data generator, validation and the prepare stage."""
