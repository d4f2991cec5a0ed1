"""Alias of :mod:`lit_multimodal.quickstart.digits`, the home of the quickstart digits data.

Kept so that configs naming ``lit_multimodal.data.digits.QuickstartDigits`` and code importing from here keep
working.
"""

from lit_multimodal.quickstart.digits import (  # noqa: F401
    IMAGE_SIDE,
    SOURCE_DIGITS,
    TARGET_DIGITS,
    QuickstartDigits,
    digit_image,
    load_digits_arrays,
    split_indices,
    write_digits_dataset,
)
