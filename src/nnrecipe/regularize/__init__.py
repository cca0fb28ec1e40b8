"""The regularize stage."""
