"""Muster's scheduling worker: the workflows that Schedule resources start."""
