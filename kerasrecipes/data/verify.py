"""Finding the files a training run cannot read, before the run reads them.

The scan decodes every file with the decoder `image_folder`'s pipeline uses
(`decode_rgb`), because other checks disagree with it: `PIL.Image.verify()`
passes TIFF files TensorFlow cannot decode and reads no pixel data, so it
passes JPEGs cut short. Bad files are reported (returned and logged once),
never deleted; `quarantine=DIR` moves them out only when asked. Results are
cached by file size and modification time, so a second scan of an unchanged
folder decodes nothing.

The walk cannot be tricked by the folder: links are followed once each (a
link back to a folder above it is a loop and is skipped), each real file is
listed once, only regular files are opened (a FIFO named `x.png` would
block the reader forever), a header larger than the pixel limit is refused
before decoding, names that are not UTF-8 are reported with their bytes
escaped, and hidden files and folders (`.git`, `.ipynb_checkpoints`) are
ignored. `docs/data.md` has the table.
"""

import dataclasses
import datetime
import hashlib
import io
import json
import logging
import os
import re
import shutil
import stat
import statistics
import warnings
from concurrent.futures import ThreadPoolExecutor

import tensorflow as tf
from PIL import Image

logger = logging.getLogger("kerasrecipes.data")

_CACHE_VERSION = 2
# Pillow's `Image.MAX_IMAGE_PIXELS` (1024^3 / 4 / 3): a 24-bit image of this size takes 256 MiB.
DEFAULT_MAX_PIXELS = 89_478_485
QUARANTINE_MANIFEST = "kerasrecipes-quarantine.json"
_MANIFEST_FORMAT = "kerasrecipes-quarantine"
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
        ignored: hidden files and folders (names starting with "."), not
            scanned.
    """

    valid: list
    skipped: list
    decoded: int
    quarantined: list = dataclasses.field(default_factory=list)
    ignored: list = dataclasses.field(default_factory=list)


def default_cache_dir():
    """`$KERASRECIPES_CACHE`, or `~/.cache/kerasrecipes`."""
    return os.environ.get(
        "KERASRECIPES_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "kerasrecipes")
    )


def verify_images(
    path,
    *,
    cache=True,
    quarantine=None,
    num_threads=None,
    files=None,
    max_pixels=DEFAULT_MAX_PIXELS,
):
    """Scans a folder and reports every file that cannot be read as an image.

    Every regular file under `path` (recursively, see `walk_images`) is read
    and decoded with `decode_rgb`, the decoder of the training pipeline. A
    file is skipped when it is empty, truncated or corrupt, not an image at
    all, an image in a format TensorFlow cannot decode (TIFF, for example),
    larger than `max_pixels` (read from its header, before decoding), not a
    regular file, unreadable to this user, or named with bytes that are not
    UTF-8. Nothing is deleted; the skipped files are returned with their
    reasons and logged once (logger `kerasrecipes.data`, level WARNING).

    Args:
        path: folder to scan.
        cache: True to keep the results in the cache folder
            (`$KERASRECIPES_CACHE` or `~/.cache/kerasrecipes`), a folder to
            keep them there, or False. A file whose size and modification
            time have not changed since the cached scan is not decoded again.
            Errors that may pass (permissions, I/O) are never cached.
            Defaults to True.
        quarantine: None, or a folder outside `path`. Corrupt image files
            are moved there, keeping their paths relative to `path`, and
            `kerasrecipes-quarantine.json` in it records where each came
            from and why, each move recorded before the next. Only files
            whose content is bad are moved: not files this user cannot read,
            not files over the pixel limit, not files reached through a link
            from outside `path`, and not files that are not images by
            extension (a `Thumbs.db`, a `README.txt`). Defaults to None.
        num_threads: decoding threads; TensorFlow releases the GIL while it
            decodes. Defaults to twice the CPU count.
        files: optional list of paths under `path` to scan instead of the
            whole folder (used by `image_folder`, which scans class folders
            only).
        max_pixels: images with more pixels are skipped without being
            decoded (a 500 KB PNG can declare 23000 x 23000 pixels and take
            2.4 GB to decode). None for no limit. Defaults to 89,478,485,
            Pillow's `MAX_IMAGE_PIXELS`.

    Returns:
        A `ScanReport` with `valid`, `skipped` (`(path, reason)` pairs),
        `decoded`, `quarantined` and `ignored`.

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
    walk = Walk([], [], [])
    if files is None:
        walk = walk_images(path)
        files = walk.files
    files = sorted(os.path.abspath(os.fspath(f)) for f in files)
    results, to_decode, cached, cache_file = _cached_results(path, files, cache, max_pixels)

    num_threads = num_threads or 2 * (os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=num_threads) as pool:
        checked = pool.map(lambda file: _check_file(file, max_pixels), [f for f, _ in to_decode])
        for (file, _), result in zip(to_decode, checked):
            results[file] = result

    if cache_file is not None and to_decode:
        for file, file_stat in to_decode:
            reason, pixels = results[file]
            if not _may_pass(reason):
                key = os.path.relpath(file, path)
                cached[key] = [file_stat.st_size, file_stat.st_mtime_ns, reason, pixels]
        _save_cache(cache_file, path, cached)

    valid = [f for f in files if results[f][0] is None]
    skipped = walk.skipped + [(shown_path(f), results[f][0]) for f in files if results[f][0]]
    report = ScanReport(
        valid=valid, skipped=sorted(skipped), decoded=len(to_decode), ignored=walk.ignored
    )
    if quarantine is not None:
        report.quarantined = _quarantine(path, report.skipped, quarantine)
    if skipped:
        _log_skipped(path, len(files) + len(walk.skipped), report.skipped, report.quarantined)
    if walk.ignored:
        logger.info(
            "Ignored %d hidden files and folders under %s (names starting with '.'), e.g. %s.",
            len(walk.ignored),
            path,
            os.path.relpath(walk.ignored[0], path),
        )
    return report


def _cached_results(path, files, cache, max_pixels):
    """`(results, to_decode, cache entries, cache file)`: what the cache and `stat` settle."""
    cache_file = _cache_file(path, cache)
    cached = _load_cache(cache_file)
    results, to_decode = {}, []
    for file in files:
        if not is_utf8(file):
            results[file] = ("file name is not valid UTF-8; rename it", None)
            continue
        try:
            file_stat = os.stat(file)
        except OSError as error:  # a broken link, or a file removed while we scan
            results[file] = (f"cannot be read ({error.strerror})", None)
            continue
        if not stat.S_ISREG(file_stat.st_mode):
            results[file] = (f"not a regular file ({_file_kind(file_stat.st_mode)})", None)
            continue
        entry = cached.get(os.path.relpath(file, path))
        if entry is not None and entry[:2] == [file_stat.st_size, file_stat.st_mtime_ns]:
            reason, pixels = entry[2], entry[3]
            if reason is None and max_pixels is not None and pixels and pixels > max_pixels:
                reason = _too_large(pixels, max_pixels)
            results[file] = (reason, pixels)
        else:
            to_decode.append((file, file_stat))
    return results, to_decode, cached, cache_file


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
# Named as images but not decodable by `decode_rgb`: quarantined with the broken ones.
_OTHER_IMAGE_EXTENSIONS = (".tif", ".tiff", ".heic", ".heif", ".avif", ".psd", ".jp2")


def is_image_name(file):
    """Whether the file's extension names an image format (readable or not)."""
    extension = os.path.splitext(file)[1].lower()
    return extension in IMAGE_EXTENSIONS + _OTHER_IMAGE_EXTENSIONS


def is_utf8(name):
    """Whether a path decoded by Python from the file system is valid UTF-8.

    Python keeps undecodable bytes of file names as lone surrogates
    (PEP 383); TensorFlow's string tensors and JSON reports cannot hold them.
    """
    try:
        os.fspath(name).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_path(path):
    """The path with undecodable bytes escaped (`caf\\xe9.jpg`), safe to print and to store."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclasses.dataclass
class Walk:
    """What `walk_images` found: files to scan, entries skipped with a reason, hidden ones, and
    `(path, first path)` of the files reached a second time."""

    files: list
    skipped: list
    ignored: list
    duplicates: list = dataclasses.field(default_factory=list)


def walk_images(path, seen_files=None):
    """Lists the files under `path` for the scan, safely.

    - Links are followed, but a link to a folder that contains it (`up ->
      ..`, or a link to the data folder itself) is a loop and is skipped,
      and a folder reached twice is scanned once.
    - Each real file is listed once: a second path to the same file (a link,
      a hard link) is skipped, naming the first. Pass the same `seen_files`
      dict to several walks (one per class) to share this: it maps each
      file's `(device, inode)` to the path it was first listed under.
    - Entries whose names start with "." are ignored (`.git`,
      `.ipynb_checkpoints`, `.DS_Store`).
    - Names that are not UTF-8 are skipped, with their bytes escaped.
    - Everything that is not a folder or a regular file (FIFOs, sockets,
      devices) is skipped as "not a regular file", never opened.

    Returns:
        A `Walk` with `files` (sorted by folder, then name), `skipped`
        (`(path, reason)` pairs) and `ignored` (hidden paths).
    """
    seen_files = {} if seen_files is None else seen_files
    walk = Walk([], [], [])
    _walk_folder(os.path.abspath(os.fspath(path)), set(), seen_files, walk)
    return walk


def _walk_folder(folder, seen_folders, seen_files, walk):
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as error:
        walk.skipped.append((shown_path(folder), f"folder cannot be read ({error.strerror})"))
        return
    for entry in entries:
        file = entry.path
        if entry.name.startswith("."):
            walk.ignored.append(file)
            continue
        if not is_utf8(entry.name):
            walk.skipped.append((shown_path(file), "file name is not valid UTF-8; rename it"))
            continue
        try:
            file_stat = os.stat(file)  # follows links
        except OSError as error:
            reason = "broken link" if entry.is_symlink() else "cannot be read"
            walk.skipped.append((file, f"{reason} ({error.strerror})"))
            continue
        identity = (file_stat.st_dev, file_stat.st_ino)
        if stat.S_ISDIR(file_stat.st_mode):
            if _is_inside(os.path.realpath(file), os.path.realpath(folder)):
                walk.skipped.append((file, "link loop: it leads back to a folder above it"))
            elif identity in seen_folders:
                walk.skipped.append((file, "folder already scanned through another path"))
            else:
                seen_folders.add(identity)
                _walk_folder(file, seen_folders, seen_files, walk)
        elif not stat.S_ISREG(file_stat.st_mode):
            walk.skipped.append((file, f"not a regular file ({_file_kind(file_stat.st_mode)})"))
        elif identity in seen_files:
            walk.skipped.append((file, f"the same file as {seen_files[identity]}; read once"))
            walk.duplicates.append((file, seen_files[identity]))
        else:
            seen_files[identity] = file
            walk.files.append(file)


def walk_files(path):
    """The files `walk_images` lists under `path` (kept for callers of the old name)."""
    return walk_images(path).files


def _file_kind(mode):
    kinds = (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "not a file")


# Reasons that may pass without the file changing (permissions, I/O) or that depend on the
# scan's arguments (the pixel limit): never cached.
_TRANSIENT = ("cannot be read", "not a regular file", "file name is not valid UTF-8", "image of ")


def _may_pass(reason):
    return reason is not None and reason.startswith(_TRANSIENT)


def _too_large(pixels, max_pixels):
    return (
        f"image of {pixels / 1e6:.1f} M pixels, above the limit of {max_pixels / 1e6:.1f} M "
        "(max_pixels=); not decoded"
    )


def _check_file(file, max_pixels):
    """`(reason, pixels)`: reason None when `file` decodes, else why not; pixels from the header."""
    try:
        # O_NONBLOCK: a FIFO swapped in after the scan's stat must not block the reader.
        descriptor = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(descriptor, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return "not a regular file (changed during the scan)", None
            contents = f.read()
    except OSError as error:
        return f"cannot be read ({error.strerror})", None
    if not contents:
        return "empty file (0 bytes)", None
    pixels = _header_pixels(contents)
    if max_pixels is not None and pixels is not None and pixels > max_pixels:
        return _too_large(pixels, max_pixels), pixels
    try:
        image = decode_rgb(contents)
    except tf.errors.OpError as error:
        message = _clean_tf_message(error)
        if "Unknown image file format" in message:
            for magic, name in _OTHER_IMAGE_FORMATS:
                if contents.startswith(magic):
                    return (
                        f"{name} image, a format TensorFlow cannot decode; convert it to JPEG/PNG"
                    ), pixels
            return "not an image (unknown file format)", pixels
        return f"corrupt or truncated image ({message})", pixels
    if image.shape[0] == 0 or image.shape[1] == 0:
        return "image with zero width or height", pixels
    return None, int(image.shape[0]) * int(image.shape[1])


def read_regular_file(path):
    """The bytes of `path` if it is a regular file, opened without blocking (a FIFO or a device
    never hangs the reader); `OSError` naming what it is otherwise."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(descriptor, "rb") as file:
        mode = os.fstat(file.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(f"{path} is {_file_kind(mode)}, not a regular file")
        return file.read()


def _gif_frame_pixels(contents):
    """The pixels a decoder allocates for a GIF: for each frame, its screen or the frame where
    it reaches past the screen, added up over the frames; read from the block structure
    without decoding.

    Pillow's header gives the first frame's size only, and TensorFlow's decoder (giflib's
    `DGifSlurp`) unpacks every frame, even when it returns the first.
    """
    if len(contents) < 13:
        return None
    width, height = (
        int.from_bytes(contents[6:8], "little"),
        int.from_bytes(contents[8:10], "little"),
    )
    screen, total = width * height, 0
    position = 13 + (3 * 2 ** ((contents[10] & 7) + 1) if contents[10] & 0x80 else 0)
    while position < len(contents):
        block = contents[position]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, then sub-blocks
            position += 2
        elif block == 0x2C:  # image descriptor
            if position + 10 > len(contents):
                break
            left, top, frame_width, frame_height = (
                int.from_bytes(contents[position + i : position + i + 2], "little")
                for i in (1, 3, 5, 7)
            )
            total += max(screen, (left + frame_width) * (top + frame_height))
            flags = contents[position + 9]
            position += 10 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0) + 1
        else:
            break
        while position < len(contents) and contents[position]:  # sub-blocks up to size 0
            position += contents[position] + 1
        position += 1
    return max(total, screen)


def _header_pixels(contents):
    """Width x height from the image header (Pillow reads only the header), or None; for a
    GIF, its largest frame's.

    Pillow refuses headers above twice its own limit with `DecompressionBombError`, whose
    message gives the pixel count.
    """
    if contents[:6] in (b"GIF87a", b"GIF89a"):
        return _gif_frame_pixels(contents)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(contents)) as image:
                width, height = image.size
        return width * height
    except Image.DecompressionBombError as error:
        found = re.search(r"\((\d+) pixels\)", str(error))
        return int(found.group(1)) if found else 2 * Image.MAX_IMAGE_PIXELS + 1
    except Exception:  # noqa: BLE001 - not an image Pillow knows: TensorFlow's decoder decides
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


# Reasons whose file content is bad (or in a format the decoder cannot read), the only files
# quarantine moves; never files this user cannot read, nor images over the pixel limit.
_CORRUPT = ("empty file", "corrupt or truncated", "not an image", "image with zero")


def _is_corrupt(reason):
    return reason.startswith(_CORRUPT) or "a format TensorFlow cannot decode" in reason


def _quarantine(path, skipped, quarantine):
    real_data = os.path.realpath(path)
    folder = os.path.abspath(os.fspath(quarantine))
    real_folder = os.path.realpath(folder)
    if _is_inside(real_data, real_folder):
        raise ValueError(
            f"quarantine folder {folder} is inside the data folder {path}"
            + (f" (it resolves to {real_folder})" if real_folder != folder else "")
            + "; it would be read as a class folder. Pass a folder outside it."
        )
    manifest_path = os.path.join(folder, QUARANTINE_MANIFEST)
    manifest = _read_manifest(manifest_path)
    moved = []
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    for file, reason in skipped:
        if not (is_image_name(file) and _is_corrupt(reason)):
            continue
        if not _is_inside(real_data, os.path.realpath(os.path.dirname(file))):
            continue  # in a folder linked from outside the data folder: not ours to move
        target = os.path.join(folder, os.path.relpath(file, path))
        stem, extension = os.path.splitext(target)
        copy = 1
        while os.path.lexists(target):  # never overwrite a file quarantined earlier
            target = f"{stem}.{copy}{extension}"
            copy += 1
        os.makedirs(os.path.dirname(target), exist_ok=True)
        record = {"source": file, "moved_to": target, "reason": reason, "time": now}
        # Recorded before the move: a run killed in between leaves a record and the file in place.
        _write_manifest(manifest_path, manifest["moves"] + [record], manifest)
        try:
            shutil.move(file, target)
        except OSError:
            _write_manifest(manifest_path, manifest["moves"], manifest)
            raise
        manifest["moves"].append(record)
        moved.append((file, target))
    return moved


def _is_inside(folder, path):
    return path == folder or path.startswith(folder + os.sep)


def _read_manifest(manifest_path):
    """Our manifest in `manifest_path`, or a new one; refuses a file of another format."""
    if not os.path.lexists(manifest_path):
        return {"format": _MANIFEST_FORMAT, "version": 1, "moves": []}
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as error:
        manifest = error
    if not (
        isinstance(manifest, dict)
        and manifest.get("format") == _MANIFEST_FORMAT
        and isinstance(manifest.get("moves"), list)
    ):
        raise ValueError(
            f"{manifest_path} exists and is not a kerasrecipes quarantine manifest; nothing was "
            "moved. Pass another quarantine folder, or move that file away."
        )
    return manifest


def _write_manifest(manifest_path, moves, manifest):
    temporary = f"{manifest_path}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        json.dump({**manifest, "moves": moves}, f, indent=1)
    os.replace(temporary, manifest_path)


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


def median_image_size(path, max_files=500):
    """The median side of the images under `path`: `(height + width) / 2` of each, from its header.

    Reads up to `max_files` readable images, spread evenly over the sorted
    listing (`walk_images`: no links followed into loops, no FIFOs opened);
    a segmentation folder's `masks/` is left out. Files Pillow cannot open
    are passed over. None when there is no readable image.
    """
    from PIL import Image

    files = [
        file
        for file in walk_images(path).files
        if is_image_name(file) and f"{os.sep}masks{os.sep}" not in file
    ]
    if len(files) > max_files:
        files = files[:: len(files) // max_files][:max_files]
    sides = []
    for file in files:
        try:
            with Image.open(file) as image:
                width, height = image.size
        except (OSError, ValueError, Image.DecompressionBombError):  # named by the scan later
            continue
        sides.append((height + width) / 2)
    return float(statistics.median(sides)) if sides else None
