"""Finding the files a training run cannot read, before the run reads them.

The scan decodes every file with the decoder `image_folder`'s pipeline uses
(`decode_rgb`), because other checks disagree with it: `PIL.Image.verify()`
passes TIFF files TensorFlow cannot decode and reads no pixel data, so it
passes JPEGs cut short. Bad files are reported (returned and logged once),
never deleted; `quarantine=DIR` moves them out only when asked. Results are
cached by file size and modification time, so a second scan of an unchanged
folder decodes nothing.
"""

import dataclasses
import datetime
import hashlib
import json
import logging
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

import tensorflow as tf

logger = logging.getLogger("kerasrecipes.data")

_CACHE_VERSION = 1
# Shown at most this many bad files in the log line; all of them are returned.
_LOG_LIMIT = 20
# Magic numbers of image formats TensorFlow's `decode_image` does not read, so the report can say
# "TIFF" instead of "unknown format".
_OTHER_IMAGE_FORMATS = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"8BPS", "Photoshop PSD"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
)


def decode_rgb(contents):
    """Decodes image bytes to a `(height, width, 3)` uint8 tensor.

    The one decoder of the package: the scan and the `image_folder` pipeline
    both call it, so a file the scan passes is a file the pipeline reads.
    JPEG, PNG, GIF (first frame), BMP and WebP are read; grayscale, RGBA and
    palette images come out as RGB, 16-bit PNGs as 8-bit.
    """
    return tf.io.decode_image(contents, channels=3, dtype=tf.uint8, expand_animations=False)


@dataclasses.dataclass
class ScanReport:
    """What `verify_images` found.

    Attributes:
        valid: sorted paths of the files that decode.
        skipped: sorted `(path, reason)` pairs of the files that do not.
        decoded: how many files this call decoded; the others came from the
            cache of an earlier scan.
        quarantined: `(original path, new path)` pairs of the files moved
            by `quarantine=`.
    """

    valid: list
    skipped: list
    decoded: int
    quarantined: list = dataclasses.field(default_factory=list)


def default_cache_dir():
    """`$KERASRECIPES_CACHE`, or `~/.cache/kerasrecipes`."""
    return os.environ.get(
        "KERASRECIPES_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "kerasrecipes")
    )


def verify_images(path, *, cache=True, quarantine=None, num_threads=None, files=None):
    """Scans a folder and reports every file that cannot be read as an image.

    Every regular file under `path` (recursively) is read and decoded with
    `decode_rgb`, the decoder of the training pipeline. A file is skipped
    when it is empty, truncated or corrupt, not an image at all, or an image
    in a format TensorFlow cannot decode (TIFF, for example). Nothing is
    deleted; the skipped files are returned with their reasons and logged
    once (logger `kerasrecipes.data`, level WARNING).

    Args:
        path: folder to scan.
        cache: True to keep the results in the cache folder
            (`$KERASRECIPES_CACHE` or `~/.cache/kerasrecipes`), a folder to
            keep them there, or False. A file whose size and modification
            time have not changed since the cached scan is not decoded again.
            Defaults to True.
        quarantine: None, or a folder outside `path`. Bad image files are
            moved there, keeping their paths relative to `path`, and
            `manifest.json` in it records where each came from and why it
            was moved. Files that are not images by extension (a
            `Thumbs.db`, a `README.txt`) are reported but never moved.
            Defaults to None.
        num_threads: decoding threads; TensorFlow releases the GIL while it
            decodes. Defaults to twice the CPU count.
        files: optional list of paths under `path` to scan instead of the
            whole folder (used by `image_folder`, which scans class folders
            only).

    Returns:
        A `ScanReport` with `valid`, `skipped` (`(path, reason)` pairs),
        `decoded` and `quarantined`.

    Example:

    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "notes.jpg"), "w") as f:
    ...     _ = f.write("not an image")
    >>> report = verify_images(folder, cache=False)
    >>> [(os.path.basename(p), reason) for p, reason in report.skipped]
    [('notes.jpg', 'not an image (unknown file format)')]
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"verify_images: folder {path} does not exist or is not a folder. "
            "Pass the folder that holds the images."
        )
    if files is None:
        files = walk_files(path)
    files = sorted(os.path.abspath(f) for f in files)

    cache_file = _cache_file(path, cache)
    cached = _load_cache(cache_file)
    results, to_decode = {}, []
    for file in files:
        try:
            stat = os.stat(file)
        except OSError as error:  # a broken link, or a file removed while we scan
            results[file] = f"cannot be read ({error.strerror})"
            continue
        key = os.path.relpath(file, path)
        entry = cached.get(key)
        if entry is not None and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns:
            results[file] = entry[2]
        else:
            to_decode.append((file, stat))

    num_threads = num_threads or 2 * (os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=num_threads) as pool:
        for (file, _), reason in zip(to_decode, pool.map(_check_file, [f for f, _ in to_decode])):
            results[file] = reason

    if cache_file is not None and to_decode:
        stats = dict(to_decode)
        for file in files:
            key = os.path.relpath(file, path)
            if file in stats:
                cached[key] = [stats[file].st_size, stats[file].st_mtime_ns, results[file]]
        _save_cache(cache_file, path, cached)

    valid = [f for f in files if results[f] is None]
    skipped = [(f, results[f]) for f in files if results[f] is not None]
    report = ScanReport(valid=valid, skipped=skipped, decoded=len(to_decode))
    if quarantine is not None:
        report.quarantined = _quarantine(path, skipped, quarantine)
    if skipped:
        _log_skipped(path, len(files), skipped, report.quarantined)
    return report


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
# Named as images but not decodable by `decode_rgb`: quarantined with the broken ones.
_OTHER_IMAGE_EXTENSIONS = (".tif", ".tiff", ".heic", ".heif", ".avif", ".psd", ".jp2")


def is_image_name(file):
    """Whether the file's extension names an image format (readable or not)."""
    extension = os.path.splitext(file)[1].lower()
    return extension in IMAGE_EXTENSIONS + _OTHER_IMAGE_EXTENSIONS


def walk_files(path):
    found = []
    for root, dirs, names in os.walk(path, followlinks=True):
        dirs.sort()
        found.extend(os.path.join(root, name) for name in sorted(names))
    return found


def _check_file(file):
    """Returns None when `file` decodes, else the reason it does not."""
    try:
        with open(file, "rb") as f:
            contents = f.read()
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    if not contents:
        return "empty file (0 bytes)"
    try:
        image = decode_rgb(contents)
    except tf.errors.OpError as error:
        message = _clean_tf_message(error)
        if "Unknown image file format" in message:
            for magic, name in _OTHER_IMAGE_FORMATS:
                if contents.startswith(magic):
                    return (
                        f"{name} image, a format TensorFlow cannot decode; convert it to JPEG/PNG"
                    )
            return "not an image (unknown file format)"
        return f"corrupt or truncated image ({message})"
    if image.shape[0] == 0 or image.shape[1] == 0:
        return "image with zero width or height"
    return None


def _clean_tf_message(error):
    """TensorFlow's message without the `{{function_node ...}}` prefix and `[Op:...]` suffix."""
    message = error.message if hasattr(error, "message") else str(error)
    message = re.sub(r"\{\{[^}]*\}\}\s*", "", message)
    message = re.sub(r"\s*\[Op:[^\]]*\]", "", message)
    return message.strip().rstrip(".")


def _cache_file(path, cache):
    if cache is False or cache is None:
        return None
    folder = default_cache_dir() if cache is True else os.fspath(cache)
    digest = hashlib.sha1(path.encode("utf-8")).hexdigest()[:16]
    return os.path.join(folder, "verify", f"{digest}.json")


def _load_cache(cache_file):
    if cache_file is None or not os.path.exists(cache_file):
        return {}
    try:
        with open(cache_file) as f:
            content = json.load(f)
    except (OSError, ValueError):
        return {}
    if content.get("version") != _CACHE_VERSION:
        return {}
    return content.get("files", {})


def _save_cache(cache_file, path, entries):
    try:
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        temporary = f"{cache_file}.{os.getpid()}.tmp"
        with open(temporary, "w") as f:
            json.dump({"version": _CACHE_VERSION, "root": path, "files": entries}, f)
        os.replace(temporary, cache_file)
    except OSError as error:
        logger.warning(
            "Could not write the scan cache %s (%s); scans will not be cached.", cache_file, error
        )


def _quarantine(path, skipped, quarantine):
    quarantine = os.path.abspath(os.fspath(quarantine))
    if quarantine == path or quarantine.startswith(path + os.sep):
        raise ValueError(
            f"quarantine folder {quarantine} is inside the data folder {path}; it would be read "
            "as a class folder. Pass a folder outside it."
        )
    manifest_path = os.path.join(quarantine, "manifest.json")
    manifest = []
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    moved = []
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    for file, reason in skipped:
        if not is_image_name(file):
            continue
        target = os.path.join(quarantine, os.path.relpath(file, path))
        stem, extension = os.path.splitext(target)
        copy = 1
        while os.path.exists(target):  # never overwrite a file quarantined earlier
            target = f"{stem}.{copy}{extension}"
            copy += 1
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(file, target)
        moved.append((file, target))
        manifest.append({"source": file, "moved_to": target, "reason": reason, "time": now})
    if moved:
        with open(manifest_path, "w") as f:
            json.dump(manifest, f, indent=1)
    return moved


def _log_skipped(path, total, skipped, quarantined):
    lines = [f"  {os.path.relpath(file, path)}: {reason}" for file, reason in skipped[:_LOG_LIMIT]]
    if len(skipped) > _LOG_LIMIT:
        lines.append(f"  ... and {len(skipped) - _LOG_LIMIT} more (all of them are returned)")
    action = f"moved {len(quarantined)} to quarantine" if quarantined else "left them in place"
    logger.warning(
        "Skipped %d of %d files under %s that cannot be read as images (%s):\n%s",
        len(skipped),
        total,
        path,
        action,
        "\n".join(lines),
    )
