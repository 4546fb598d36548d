"""Sending digests: planning, the weekly schedule, the ledger, workers, faults, SendGrid's rules."""
