"""Muster's order fulfillment saga: reserve, charge, ship, confirm — or compensate."""
