"""Reading real-world mail: charsets, addresses, containers, signatures and automatic mail.

Each module takes bytes or header strings and returns text and facts; none does I/O.
:mod:`mailgate.parsing` puts them together into a ``ParsedMail``.
"""
