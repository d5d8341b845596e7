"""Reading real-world mail: charsets, addresses, containers, signatures and automatic mail.

Each module takes bytes or header strings and returns text and facts, without I/O;
:mod:`mailgate.mail.parse` puts them together into a ``ParsedMail`` (:mod:`.parsed`). The one
exception is :mod:`.held`, the thread finder that keeps unthreaded automatic mail.
"""
