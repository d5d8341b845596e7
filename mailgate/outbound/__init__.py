"""Every mail mailgate sends: outbox rows, templates, notices and the sender."""
