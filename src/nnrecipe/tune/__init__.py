"""The tune stage."""
