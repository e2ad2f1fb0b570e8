"""Decoding: whatever a user or a dataset hands us -> a plain uint8 array, or an `InputError` to show as is.

`images` reads the Pillow formats and routes DICOM to `dicom`; `base` holds what both share (the error, the
decoded-image record and the size limits).
"""
from core.io.base import DecodedImage, ImageSource, InputError
from core.io.images import decode_bytes, read_image, read_image_with_info, read_many

__all__ = ["DecodedImage", "ImageSource", "InputError", "decode_bytes", "read_image", "read_image_with_info", "read_many"]
