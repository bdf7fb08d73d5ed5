"""snpbag: a foundation model of human genotype variation."""

__version__ = "0.1.0"

#: Version of the on-disk store layout written by ``snpbag convert``. A store whose
#: ``snpbag_format_version`` attribute differs is refused with StoreFormatError.
STORE_FORMAT_VERSION = 1
