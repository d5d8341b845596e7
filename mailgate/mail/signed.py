"""Signed and encrypted mail: read the signed content, keep the signature, keep what cannot be read.

``multipart/signed`` (PGP/MIME, RFC 3156; S/MIME, RFC 8551) holds the content
first and the signature second: the body is read from the content, and the
signature is kept as an attachment with its own type (named ``signature.asc``
or ``smime.p7s`` when the client gave no name), never shown as text.
Encrypted mail (``multipart/encrypted``, S/MIME ``enveloped-data``, inline
PGP) cannot be read without the recipient's key: its parts are kept raw as
attachments and the message carries :data:`ENCRYPTED_NOTE`.
"""

from __future__ import annotations

from email.message import Message as StdMessage

ENCRYPTED_NOTE = "encrypted: not readable by mailgate"
SIGNATURE_TYPES = {
    "application/pgp-signature": "signature.asc",
    "application/pkcs7-signature": "smime.p7s",
    "application/x-pkcs7-signature": "smime.p7s",
}
_PKCS7_MIME = ("application/pkcs7-mime", "application/x-pkcs7-mime")


def signed_parts(part: StdMessage) -> tuple[list[StdMessage], list[StdMessage]]:
    """(content parts, signature parts) of a ``multipart/signed``."""
    payload = part.get_payload()
    children: list[StdMessage] = [c for c in payload if isinstance(c, StdMessage)] if isinstance(payload, list) else []
    content = [c for c in children if c.get_content_type() not in SIGNATURE_TYPES]
    signatures = [c for c in children if c.get_content_type() in SIGNATURE_TYPES]
    return content[:1] + content[1:], signatures


def is_encrypted(part: StdMessage) -> bool:
    """A part whose content needs a private key to read."""
    ctype = part.get_content_type()
    if ctype == "multipart/encrypted" or ctype == "application/pgp-encrypted":
        return True
    if ctype in _PKCS7_MIME:
        smime = str(part.get_param("smime-type", "") or "").lower()
        name = str(part.get_filename() or part.get_param("name") or "").lower()
        return smime in ("enveloped-data", "authenveloped-data") or (not smime and name == "smime.p7m")
    return False


def is_inline_pgp_message(text: str) -> bool:
    return "-----BEGIN PGP MESSAGE-----" in text[:4096]
