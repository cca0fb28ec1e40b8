"""The overfit stage."""
