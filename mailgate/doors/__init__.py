"""The doors: how mail comes in (SMTP, IMAP; the pipe door is ``mailgate ingest`` in cli/)."""
