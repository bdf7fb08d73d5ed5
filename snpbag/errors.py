"""Errors users see. Each message is one line naming the file and the fix.

The CLI turns any SnpbagError into ``snpbag: error: <message>`` and exit status 2,
so library code raises these (never SystemExit) and tests match on the message.
"""

from __future__ import annotations


class SnpbagError(Exception):
    """Base class: a problem with the user's input or request, not a bug."""

    exit_code = 2


class InputError(SnpbagError):
    """A malformed, unsorted or otherwise unusable input file or option."""


class SiteMismatchError(SnpbagError):
    """Input sites do not match the model's or the store's site vocabulary."""


class SampleError(SnpbagError):
    """Requested samples are absent, duplicated or otherwise inconsistent."""


class StoreFormatError(SnpbagError):
    """A Zarr store that is corrupt, incomplete or written by an incompatible version."""


class CheckpointError(SnpbagError):
    """A model directory or checkpoint that cannot be loaded."""


class ConfigError(SnpbagError):
    """A configuration that does not compose or fails validation."""


class TrainingError(SnpbagError):
    """A training job that cannot go on (a DDP rank hung past the collective timeout)."""


class ToolMissingError(SnpbagError):
    """An external program (bgzip, tabix, plink2, beagle, ...) is not installed."""
