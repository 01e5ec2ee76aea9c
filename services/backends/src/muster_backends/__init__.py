"""Muster's reference backends: inventory, payment, shipping and notification over HTTP."""
