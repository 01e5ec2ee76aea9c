"""Muster's human-in-the-loop approvals: requests that wait for people, never forever."""
