"""Bundled example experiments (data that ships with scikit-learn; nothing is downloaded)."""
