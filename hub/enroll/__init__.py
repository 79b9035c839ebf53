"""Card enrollment at the hub: opening a site's sealed ``enroll.read`` and finishing the
pending enrollment (``handler``), the command line's conversation with a site while a
card is enrolled there (``site``), and reading a card at the admin's desk (``desk``).
The acts that start and finish enrollments are the application core's (``hub.core``)."""

from __future__ import annotations

from .handler import MAX_SECONDS, EnrollError, EnrollHandler, ReadOutcome, describe, for_service, load_enroll_key

__all__ = ["MAX_SECONDS", "EnrollError", "EnrollHandler", "ReadOutcome", "describe", "for_service",
           "load_enroll_key"]
