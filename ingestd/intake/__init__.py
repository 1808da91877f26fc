"""Intake: take bytes from a source and make them durable. No parsing beyond headers."""
