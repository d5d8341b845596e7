"""Sweeps run by the scheduler: SLA, reminders, auto-close, digests."""
