"""Muster's operator: ``Schedule`` and ``ApprovalPolicy`` resources reconciled into Temporal."""
