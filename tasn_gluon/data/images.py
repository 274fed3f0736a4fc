"""Reading, checking, resizing and encoding one image for packing."""
import cv2
import numpy as np


class BadImage(Exception):
    """An image file that cannot be used; the message says why (caught per image by the packer)."""


def check_jpeg_complete(data):
    """A JPEG must end its last scan with an EOI marker (FF D9). Decoders silently return a
    partly grey image for a truncated file, so truncation is checked on the bytes. Inside
    entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so an FF D9 after
    the last start-of-scan (FF DA) can only be the real end."""
    if data[:2] != b'\xff\xd8':
        return
    last_scan = data.rfind(b'\xff\xda')
    if last_scan < 0 or data.rfind(b'\xff\xd9') < last_scan:
        raise BadImage('truncated JPEG (no end-of-image marker after the last scan)')


def decode_image(data):
    """Encoded bytes -> uint8 BGR array (H, W, 3); BadImage if empty, truncated or undecodable.
    Grey and 4-channel images are converted to 3 channels."""
    if not data:
        raise BadImage('empty file')
    check_jpeg_complete(data)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise BadImage('not a decodable image')
    return img


def resize_shorter(img, size):
    """Scales so the shorter side is ``size`` (up or down; ``size`` <= 0 keeps the image).
    INTER_AREA when shrinking (no aliasing), INTER_LINEAR when enlarging."""
    h, w = img.shape[:2]
    if size <= 0 or min(h, w) == size:
        return img
    if h < w:
        new_h, new_w = size, max(1, int(round(w * size / float(h))))
    else:
        new_h, new_w = max(1, int(round(h * size / float(w)))), size
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(img, (new_w, new_h), interpolation=interp)


def encode_jpeg(img, quality):
    ok, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise BadImage('JPEG encoding failed')
    return buf.tobytes()


def load_for_record(path, resize, quality):
    """File -> JPEG bytes of the image with its shorter side at ``resize``; BadImage on failure."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as exc:
        raise BadImage('cannot read: %s' % exc.strerror)
    return encode_jpeg(resize_shorter(decode_image(data), resize), quality)
