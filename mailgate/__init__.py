"""mailgate: an email-first helpdesk. The mail conversation is the ticket."""

__version__ = "0.1.0"
