"""Muster's gateway: the HTTP API for approvals and orders, and the approver web page."""
