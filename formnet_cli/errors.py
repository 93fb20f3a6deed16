"""User-facing errors: each carries a one-line message that says what to do."""

from __future__ import annotations


class FormnetError(Exception):
    """A known failure the CLI reports in one line (traceback only with FORMNET_DEBUG=1)."""


class ImageReadError(FormnetError):
    """An input image that cannot be decoded (corrupt, truncated, empty, too large)."""


class ImageTooLargeError(ImageReadError):
    """An image over the pixel limit (``FORMNET_MAX_MEGAPIXELS``), refused from its header,
    before decoding, as a possible decompression bomb."""


class ImageWriteError(FormnetError):
    """An output that cannot be written (unwritable folder, unsupported format)."""


class OutOfSpaceError(ImageWriteError):
    """An output that cannot be written because its disk (or the user's quota) is full: every
    later output would fail the same way, so a batch stops."""


class ModelNotFoundError(FormnetError):
    """No weights for the requested task or name; the message says how to get them."""


class InvalidOptionError(FormnetError):
    """An option value outside what the model or task accepts."""


class UnknownModelError(ModelNotFoundError, InvalidOptionError):
    """A model name that is in no manifest and is no folder: a usage error (a typo in --model)."""


class DownloadError(FormnetError):
    """A weights download that failed; the message says the fix."""
