"""Why an e-mail was not delivered, split by what to do about it.

::

    DeliveryError                   an e-mail was not accepted by the SMTP server
    ├── TransientDeliveryError      4xx reply, timeout, connection lost: retry later
    └── PermanentDeliveryError      5xx reply, unusable setup: do not retry
                                    (also a jobq.UnrecoverableError, so a worker
                                    fails the job at once without spending attempts)
"""

from __future__ import annotations

from jobq import UnrecoverableError

__all__ = ["DeliveryError", "PermanentDeliveryError", "TransientDeliveryError"]


class DeliveryError(Exception):
    """An e-mail was not delivered to the SMTP server.

    Attributes:
        code: the SMTP reply code, or None when there was no reply (connection
            refused, timeout).
        retryable: whether sending again later may succeed.
    """

    retryable: bool = False

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientDeliveryError(DeliveryError):
    """Sending again later may work: a 4xx reply, a timeout or a lost connection."""

    retryable = True


class PermanentDeliveryError(DeliveryError, UnrecoverableError):
    """Sending again will not work: a 5xx reply or a setup the server refuses."""

    retryable = False
