"""Files written so that a kill leaves the old file or the new one, never half of one."""

import csv
import io
import json
import os


def write_atomically(path, data):
    """Writes `data` (str or bytes) to `path` through a temporary file in the same folder."""
    path = os.fspath(path)
    writing = f"{path}.writing"
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(writing, mode) as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(writing, path)


def write_json(path, value):
    write_atomically(path, json.dumps(value, indent=1, default=_json_default) + "\n")


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def csv_text(rows, columns=()):
    """`rows` as CSV text: `columns` first (a header even without rows), then any other keys."""
    columns = list(dict.fromkeys([*columns, *(key for row in rows for key in row)]))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()
