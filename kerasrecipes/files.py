"""Files written so that a kill leaves the old file or the new one, never half of one, and
text that shows what it holds: no terminal escapes, no formulas in a spreadsheet."""

import contextlib
import csv
import io
import json
import os
import re
import tempfile

# C0 and C1 control characters and DEL: what moves a terminal's cursor or changes its colours.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def write_atomically(path, data, overwrite=True):
    """Writes `data` (str or bytes) to `path` through a temporary file in the same folder.

    The temporary file is a new one with a name of its own (`tempfile.mkstemp`:
    `O_CREAT | O_EXCL | O_NOFOLLOW`), so a file or link planted next to `path`
    is never written through or replaced; the final rename replaces `path`
    itself, a link there included, never the file a link points to.

    Args:
        path: the file to write.
        data: str or bytes.
        overwrite: replace an existing `path`; with False, an existing one is
            a `FileExistsError` naming it. Defaults to True (the package's own
            files: run folders, reports).
    """
    path = os.fspath(path)
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(f"{path} exists already; pass --overwrite to replace it.")
    try:
        handle, writing = _new_file_beside(path, "")
    except OSError as error:
        raise OSError(error.errno, f"cannot write {path}: {error.strerror}") from None
    try:
        with os.fdopen(handle, "wb" if isinstance(data, bytes) else "w") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if overwrite:
            os.replace(writing, path)
        else:  # a link fails if `path` appeared meanwhile, where a rename would replace it
            os.link(writing, path)
    except FileExistsError:
        raise FileExistsError(f"{path} exists already; pass --overwrite to replace it.") from None
    except OSError as error:  # named after the file asked for, not the temporary one
        raise OSError(error.errno, f"cannot write {path}: {error.strerror}") from None
    finally:
        if os.path.lexists(writing):
            os.remove(writing)


@contextlib.contextmanager
def replaced_atomically(path, suffix=""):
    """A new temporary path next to `path`, for a writer that takes a path (Keras' `save`,
    `savefig`); renamed onto `path` when the block ends, removed if it raises.

    `suffix` ends the temporary name, for writers that read the format from it
    (".keras", ".weights.h5", ".png"). The file is made by `tempfile.mkstemp`, so
    nothing planted next to `path` is written through.
    """
    handle, writing = _new_file_beside(path, suffix)
    os.close(handle)
    try:
        yield writing
        os.replace(writing, path)
    finally:
        if os.path.lexists(writing):
            os.remove(writing)


def _new_file_beside(path, suffix):
    """`(descriptor, path)` of a new file next to `path` (`O_EXCL | O_NOFOLLOW`), with the
    permissions a plain `open` would give it (`mkstemp` makes it owner-only)."""
    folder, name = os.path.split(os.fspath(path))
    handle, writing = tempfile.mkstemp(
        prefix=f".{name}.", suffix=f".writing{suffix}", dir=folder or "."
    )
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(handle, 0o666 & ~umask)
    return handle, writing


def check_writable(path, overwrite=False, option="--output"):
    """Checked before any work: `path` can be written, and is no file the user did not let us
    replace."""
    path = os.fspath(path)
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(
            f"{option} {path} exists already; pass --overwrite to replace it, or another name."
        )
    if os.path.isdir(path):
        raise IsADirectoryError(f"{option} {path} is a folder; give a file name.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{option} {path}: the folder {folder} does not exist.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"{option} {path}: the folder {folder} is not writable.")


def printable(text):
    """`text` with control characters shown as escapes (`\\x1b`), for a terminal line."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], str(text))


def spreadsheet_safe(value):
    """A CSV cell a spreadsheet shows as text: one starting with = + - @ (or a tab or carriage
    return) gets a leading apostrophe, as OWASP advises against CSV injection; control
    characters are shown as escapes. Numbers are left as they are."""
    if not isinstance(value, str):
        return value
    value = printable(value)
    if value[:1] in ("+", "-") and _is_number(value):  # a number written as text: as it is
        return value
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_json(path, value):
    write_atomically(path, json.dumps(value, indent=1, default=_json_default) + "\n")


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def csv_text(rows, columns=()):
    """`rows` as CSV text: `columns` first (a header even without rows), then any other keys;
    text cells through `spreadsheet_safe`."""
    columns = list(dict.fromkeys([*columns, *(key for row in rows for key in row)]))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: spreadsheet_safe(value) for key, value in row.items()} for row in rows)
    return text.getvalue()
