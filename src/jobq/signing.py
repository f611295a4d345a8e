"""Signed job envelopes: an HMAC-SHA256 over each stored job.

With signing on, write access to Redis alone is not enough to make a worker
run a job: the producer seals every job it adds with a MAC over its queue
(prefix and name), name, data and options, made with a secret key that Redis
never sees, and a worker that requires signatures fails any job whose MAC is
missing or wrong at once, without running it.

The signature travels inside the job's options JSON (field ``o`` of the job
hash), as its last member ``"sig":"<key id>:<hex MAC>"``, so every path that
copies a job's options copies its signature with them: the Lua scripts take it
through ``ARGV`` unchanged, a scheduler's tick jobs inherit the one on its
template, flow nodes are sealed like plain adds, and an unedited dead-letter
replay keeps the producer's original signature. The MAC covers the options
*without* that member, byte for byte, so a verifier strips it and checks the
rest.

Keys come from :class:`JobSigner` or from ``JOBQ_SIGNING_KEYS``
(``"kid1:<base64 key>,kid2:<base64 key>"``): the first key signs, every key
verifies, so keys rotate without a flag day (add the new key second
everywhere, then move it first, then drop the old one once old jobs are gone).

What a signature does not cover is listed in docs/security.md (job ids,
priorities and due times, results, replays of a signed job).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
from collections.abc import Iterable, Mapping
from typing import Final

from .errors import ConfigurationError

__all__ = [
    "ENV_KEYS",
    "ENV_REQUIRED",
    "SIGNATURE_INVALID",
    "JobSigner",
]

#: The environment variable holding the keys: ``kid:<base64>`` pairs, comma-separated.
ENV_KEYS: Final = "JOBQ_SIGNING_KEYS"
#: ``0``/``false``/``no`` lets workers run unsigned jobs (a bad signature is still refused).
ENV_REQUIRED: Final = "JOBQ_SIGNING_REQUIRED"
#: How every refusal reason starts, so operators can search failed jobs for it.
SIGNATURE_INVALID: Final = "signature invalid"

_KID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_MIN_KEY_BYTES = 16
_DOMAIN = b"jobq-job-v1\x00"
# The signature is always the last member of the options object.
_SIG = re.compile(rb'(?:\A\{|,)"sig":"([A-Za-z0-9_.\-]{1,64}):([0-9a-f]{64})"\}\Z')
_ANY_SIG = re.compile(rb'"sig":"[^"]*"\}\Z')


def _message(prefix: str, queue: str, name: str, data: bytes, options: bytes) -> bytes:
    parts = (prefix.encode(), queue.encode(), name.encode(), data, options)
    return _DOMAIN + b"".join(struct.pack(">Q", len(p)) + p for p in parts)


class JobSigner:
    """Keys that sign (the first) and verify (all) job envelopes.

    Args:
        keys: ``(key id, secret)`` pairs or a mapping of them, in order; the
            first signs. Key ids are 1-64 of ``A-Z a-z 0-9 _ . -``; secrets
            are bytes of at least 16 bytes (32 random bytes recommended).
        required: whether workers refuse unsigned jobs (default). With
            False they run unsigned jobs but still refuse a wrong signature:
            for the time it takes to move a queue that already holds unsigned
            jobs onto signing.

    Raises:
        ConfigurationError: no keys, a bad key id, a short secret or a
            repeated key id (the message never shows a secret).
    """

    __slots__ = ("_keys", "_sign_kid", "required")

    def __init__(
        self,
        keys: Mapping[str, bytes] | Iterable[tuple[str, bytes]],
        *,
        required: bool = True,
    ) -> None:
        pairs = list(keys.items()) if isinstance(keys, Mapping) else list(keys)
        if not pairs:
            raise ConfigurationError("a JobSigner needs at least one (key id, secret) pair")
        table: dict[str, bytes] = {}
        for kid, secret in pairs:
            if not isinstance(kid, str) or not _KID.fullmatch(kid):
                raise ConfigurationError(
                    f"signing key id {kid!r} must be 1-64 characters of A-Z a-z 0-9 _ . -"
                )
            if not isinstance(secret, bytes) or len(secret) < _MIN_KEY_BYTES:
                raise ConfigurationError(
                    f"signing key {kid!r} must be at least {_MIN_KEY_BYTES} bytes "
                    "(32 random bytes recommended)"
                )
            if kid in table:
                raise ConfigurationError(f"signing key id {kid!r} appears twice")
            table[kid] = secret
        self._keys = table
        self._sign_kid = pairs[0][0]
        self.required = bool(required)

    def __repr__(self) -> str:
        kids = ", ".join(self._keys)
        req = self.required
        return f"<JobSigner signs with {self._sign_kid!r}, verifies [{kids}], required={req}>"

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The key ids, the signing one first."""
        return tuple(self._keys)

    @classmethod
    def parse(cls, text: str, *, required: bool = True, source: str = ENV_KEYS) -> JobSigner:
        """Keys from ``"kid1:<base64>,kid2:<base64>"`` (standard or URL-safe base64).

        Raises:
            ConfigurationError: a malformed entry; the message names ``source``
                and the entry's position, never the secret.
        """
        pairs: list[tuple[str, bytes]] = []
        for i, item in enumerate(text.split(","), 1):
            item = item.strip()
            if not item:
                continue
            kid, colon, b64 = item.partition(":")
            if not colon:
                raise ConfigurationError(f"{source}: entry {i} must look like kid:<base64 key>")
            b64 = b64.strip()
            try:
                secret = base64.b64decode(
                    b64.replace("-", "+").replace("_", "/") + "=" * (-len(b64) % 4),
                    validate=True,
                )
            except (binascii.Error, ValueError):
                raise ConfigurationError(
                    f"{source}: the key of entry {i} ({kid.strip()!r}) is not valid base64"
                ) from None
            pairs.append((kid.strip(), secret))
        if not pairs:
            raise ConfigurationError(f"{source} holds no keys")
        try:
            return cls(pairs, required=required)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{source}: {exc}") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JobSigner | None:
        """The signer configured by ``JOBQ_SIGNING_KEYS`` (and ``JOBQ_SIGNING_REQUIRED``),
        or None when the keys variable is unset or empty."""
        env = os.environ if environ is None else environ
        text = (env.get(ENV_KEYS) or "").strip()
        if not text:
            return None
        flag = (env.get(ENV_REQUIRED) or "").strip().lower()
        if flag not in ("", "1", "true", "yes", "0", "false", "no"):
            raise ConfigurationError(f"{ENV_REQUIRED} must be 1/true/yes or 0/false/no")
        return cls.parse(text, required=flag not in ("0", "false", "no"))

    # -- signing and verifying ------------------------------------------------
    def _mac(self, kid: str, prefix: str, queue: str, name: str, data: bytes, opts: bytes) -> str:
        msg = _message(prefix, queue, name, data, opts)
        return hmac.new(self._keys[kid], msg, hashlib.sha256).hexdigest()

    def seal(self, prefix: str, queue: str, name: str, data: bytes, options: bytes) -> bytes:
        """The options JSON (``b""`` for none) with the signature appended as its last member.

        ``options`` must be what jobq's encoder produced: a JSON object or empty.
        """
        if options and (not options.startswith(b"{") or not options.endswith(b"}")):
            raise ConfigurationError("job options to sign must be a JSON object")
        if _ANY_SIG.search(options):
            options = self.unsealed(options)  # re-signing (an edited replay): drop the old one
        if options == b"{}":
            options = b""  # what unsealed() gives back for a lone signature
        kid = self._sign_kid
        mac = self._mac(kid, prefix, queue, name, data, options)
        member = b'"sig":"' + kid.encode() + b":" + mac.encode() + b'"}'
        if not options:
            return b"{" + member
        return options[:-1] + b"," + member

    @staticmethod
    def unsealed(options: bytes) -> bytes:
        """``options`` without a trailing signature member (unchanged if there is none)."""
        m = _SIG.search(options)
        if m is None:
            return options
        return b"" if m.start() == 0 else options[: m.start()] + b"}"

    def verify(
        self, prefix: str, queue: str, name: str, data: bytes, options: bytes | None
    ) -> str | None:
        """None if the job's signature is good (or it is unsigned and signatures are
        not required), else why not, starting with ``"signature invalid: "``.

        The reason names the key id at most, never a key, the data or a MAC.
        """
        opts = options or b""
        m = _SIG.search(opts)
        if m is None:
            if _ANY_SIG.search(opts):
                return f"{SIGNATURE_INVALID}: the signature is malformed"
            if not self.required:
                return None
            return (
                f"{SIGNATURE_INVALID}: the job is not signed, and this worker only runs "
                f"signed jobs (set {ENV_KEYS} for the producer that adds it)"
            )
        kid = m.group(1).decode()
        if kid not in self._keys:
            return (
                f"{SIGNATURE_INVALID}: signed with key id {kid!r}, which this worker does "
                f"not have (it has {', '.join(map(repr, self._keys))})"
            )
        unsigned = b"" if m.start() == 0 else opts[: m.start()] + b"}"
        expected = self._mac(kid, prefix, queue, name, data, unsigned)
        if not hmac.compare_digest(expected.encode(), m.group(2)):
            return (
                f"{SIGNATURE_INVALID}: the signature (key id {kid!r}) does not match the "
                "job's queue, name, data and options: it was changed after it was added, "
                "or signed for another queue"
            )
        return None
