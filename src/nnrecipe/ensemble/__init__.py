"""The ensemble stage."""
