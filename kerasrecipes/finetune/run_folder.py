"""A run folder that never lies and never loses work.

- One run at a time: `run.lock` holds the owner's pid; a lock left by a dead
  process is taken over.
- Every file is written atomically (a temporary file, then `os.replace`), so
  a kill leaves the old file or the new one, never half of one.
- `run.json` records the resolved config and a fingerprint of the data; a
  later call with other settings or other data is told exactly what differs.
- `state.json` records each epoch's logs and each phase's end; it is the one
  source of `history.csv`, the curves and the report.
- A file that cannot be read is named in the error, with what to do.
"""

import csv
import dataclasses
import hashlib
import io
import json
import os
import socket
import time

from kerasrecipes.files import write_atomically, write_json  # noqa: F401 (their old home)
from kerasrecipes.finetune.config import FineTuneConfig
from kerasrecipes.tasks import all_run_files

STATE_FILE = "state.json"
IDENTITY_FILE = "run.json"
LOCK_FILE = "run.lock"
HISTORY_FILE = "history.csv"
REPORT_FILE = "report.json"
# What every run writes; `restart` removes these, the tasks' own (`Task.run_files`), and
# nothing else.
RUN_FILES = (STATE_FILE, IDENTITY_FILE, HISTORY_FILE, REPORT_FILE, "curves.png", "model.keras")
RUN_FOLDERS = ("backup", "phases", "tensorboard", "lr_find")
# Fields that change how a run trains; the others (output, verbosity) may differ on a rerun.
NOT_IDENTITY = ("out_dir", "restart", "verbose", "tensorboard")


def run_files():
    """Every file a run of any task writes."""
    return RUN_FILES + tuple(name for name in all_run_files() if name not in RUN_FILES)


class RunFolderError(RuntimeError):
    """A run folder that cannot be used as asked; the message says why and what to do."""


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunFolder:
    """The files of one fine-tuning run in `path`; use as a context manager to hold its lock."""

    def __init__(self, path):
        self.path = os.path.abspath(os.fspath(path))
        self.state = {"status": "new", "rows": {}, "phases": {}}
        self._locked = False

    def file(self, *names):
        return os.path.join(self.path, *names)

    # -- the lock ---------------------------------------------------------------------------------

    def __enter__(self):
        os.makedirs(self.path, exist_ok=True)
        lock = self.file(LOCK_FILE)
        owner = f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
        for _ in range(2):
            try:
                descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                self._take_over_if_stale(lock)
                continue
            with os.fdopen(descriptor, "w") as file:
                file.write(owner)
            self._locked = True
            return self
        raise RunFolderError(f"{self.path}: could not take the lock file {lock}.")

    def _take_over_if_stale(self, lock):
        try:
            with open(lock) as file:
                fields = file.read().split()
        except FileNotFoundError:
            return
        pid = int(fields[0]) if fields and fields[0].isdigit() else None
        host = fields[1] if len(fields) > 1 else None
        if pid is not None and host == socket.gethostname() and _pid_alive(pid):
            raise RunFolderError(
                f"{self.path} is in use by another run (process {pid}, started "
                f"{' '.join(fields[2:4])}). Wait for it to finish, or give another --out "
                "(out_dir=)."
            )
        if pid is not None and host not in (None, socket.gethostname()):
            raise RunFolderError(
                f"{self.path} is locked by process {pid} on {host} ({lock}). If no run is "
                "going on there, delete the lock file and run again."
            )
        os.remove(lock)  # its owner is dead: take the run over

    def __exit__(self, *exc):
        if self._locked:
            try:
                os.remove(self.file(LOCK_FILE))
            except FileNotFoundError:
                pass
            self._locked = False
        return False

    # -- what the folder holds ----------------------------------------------------------------------

    def read_json(self, name):
        """The JSON file `name` of the folder, or None when absent; corrupt is a RunFolderError."""
        path = self.file(name)
        if not os.path.exists(path):
            return None
        try:
            with open(path) as file:
                return json.load(file)
        except (OSError, ValueError) as error:
            raise self.corrupt(path, error) from None

    def corrupt(self, path, error):
        return RunFolderError(
            f"{path} cannot be read ({' '.join(str(error).split())}); the run folder "
            f"{self.path} is damaged. Run again with --restart (restart=True) to train from "
            "the start there, or give another --out (out_dir=)."
        )

    def open(self, identity, restart=False):
        """Checks the folder against this run's `identity`; returns "new", "resume" or "finished".

        `identity` is `{"config": {...}, "data": {...}}`, and `"source"`, the
        data folder's real path, where known. With `restart`, the run's files
        are removed first (and only those), unless they are a run of another
        data folder.
        """
        if restart:
            try:
                stored = self.read_json(IDENTITY_FILE)
            except RunFolderError:
                stored = None  # a damaged run.json: --restart is what its error advises
            self._check_same_source(stored, identity)
            self.clear()
        stored = self.read_json(IDENTITY_FILE)
        state = self.read_json(STATE_FILE)
        if stored is None:
            if state is not None:
                raise self.corrupt(self.file(IDENTITY_FILE), "missing, next to state.json")
            leftovers = [name for name in run_files() if os.path.exists(self.file(name))]
            if leftovers:
                raise RunFolderError(
                    f"{self.path} already holds {', '.join(leftovers)}, from something other "
                    "than a kerasrecipes run (no run.json). Give another --out (out_dir=), or "
                    "--restart to replace those files."
                )
            write_json(self.file(IDENTITY_FILE), identity)
            self.state = {"status": "running", "rows": {}, "phases": {}}
            self.save_state()
            return "new"
        differences = describe_differences(stored, identity)
        if differences:
            self._check_same_source(stored, identity, differences)  # no --restart over it
            raise RunFolderError(
                f"{self.path} holds a run with other settings or data: "
                + "; ".join(differences)
                + ". Run with --restart (restart=True) to train from the start with the new "
                "ones, or give another --out (out_dir=)."
            )
        if state is None:
            raise self.corrupt(self.file(STATE_FILE), "missing, next to run.json")
        self.state = state
        return "finished" if state["status"] != "running" else "resume"

    def _check_same_source(self, stored, identity, differences=()):
        """Refuses to `--restart` over a run (`stored`, its `run.json`) that read another data
        folder: that deletes its work, which a restart of this run has no business doing. The
        error lists `differences` (`describe_differences`), if any."""
        before = stored.get("source") if isinstance(stored, dict) else None
        now = identity.get("source")
        if before and now and before != now:
            differing = f" ({'; '.join(differences)})" if differences else ""
            raise RunFolderError(
                f"{self.path} holds a run of other data ({before}){differing}; --restart "
                "(restart=True) "
                f"would delete it to train on {now}. Give another --out (out_dir=), or delete "
                "that folder yourself if its run is no longer wanted."
            )

    def clear(self):
        """Removes the files a run writes (`run_files()`, RUN_FOLDERS), nothing else."""
        import shutil

        names = set(run_files())
        for entry in os.listdir(self.path):
            # A run file, or what a kill left of writing one (`kerasrecipes.files`' temporary
            # `.NAME.*.writing*`, or the older `NAME.writing`).
            leftover = entry.removesuffix(".writing") in names or (
                ".writing" in entry and any(entry.startswith(f".{name}.") for name in names)
            )
            if entry in names or leftover:
                path = self.file(entry)
                if os.path.isfile(path) or os.path.islink(path):
                    os.remove(path)
        for name in RUN_FOLDERS:
            shutil.rmtree(self.file(name), ignore_errors=True)

    # -- the state ----------------------------------------------------------------------------------

    def save_state(self):
        write_json(self.file(STATE_FILE), self.state)

    def record_epoch(self, epoch, row):
        """Stores one epoch's logs and rewrites `history.csv` from every stored epoch."""
        self.state["rows"][str(epoch)] = row
        self.save_state()
        write_atomically(self.file(HISTORY_FILE), history_csv(self.rows()))

    def rows(self):
        """Every recorded epoch's row, in epoch order."""
        return [self.state["rows"][key] for key in sorted(self.state["rows"], key=int)]

    def phase(self, name):
        return self.state["phases"].get(name)

    def finish_phase(self, name, record):
        self.state["phases"][name] = record
        self.save_state()

    def finish(self, status):
        self.state["status"] = status
        self.save_state()

    def phase_weights(self, name):
        os.makedirs(self.file("phases"), exist_ok=True)
        return self.file("phases", f"{name}.weights.h5")


def describe_differences(stored, identity):
    """Human-readable differences between two identities, e.g. "head_epochs: 4 stored, 2 now"."""
    differences = []
    for section in ("config", "data"):
        old, new = stored.get(section, {}), identity.get(section, {})
        for key in sorted(set(old) | set(new)):
            if section == "config" and key in NOT_IDENTITY:
                continue
            if section == "config" and key not in old and new.get(key) == _default(key):
                continue  # a field added after the run was made, at its default
            if old.get(key) != new.get(key):
                label = key if section == "config" else f"data {key}"
                differences.append(
                    f"{label}: {_short(old.get(key))} stored, {_short(new.get(key))} now"
                )
    return differences


def _default(field_name):
    fields = {f.name: f for f in dataclasses.fields(FineTuneConfig)}
    return fields[field_name].default if field_name in fields else None


def _short(value):
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def history_csv(rows):
    """The CSV text of `rows` (dicts), one column per key, in the order keys first appear."""
    columns = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def data_fingerprint(train_ds, val_ds, num_classes, info=None):
    """What identifies a run's data: the classes and files with `info`, else the datasets' shape."""
    if info is not None:
        files = hashlib.sha256()
        for path in list(info.train_paths) + list(info.val_paths):
            files.update(os.fspath(path).encode("utf-8", "surrogateescape") + b"\0")
        return {
            "class_names": list(info.class_names),
            "train_counts": dict(info.counts),
            "val_counts": dict(info.val_counts),
            "files_sha256": files.hexdigest()[:16],
        }
    spec = train_ds.element_spec
    return {
        "num_classes": num_classes,
        "image_shape": list(spec[0].shape[1:]),
        "train_batches": int(train_ds.cardinality()),
        "val_batches": None if val_ds is None else int(val_ds.cardinality()),
    }


def default_out_dir(data, cwd=None):
    """`runs/<data folder's name>-<hash of its real path>` under `cwd`, or beside the data folder
    when `cwd` is in it.

    The hash keeps apart two projects' folders of the same name (`photos/train` and
    `flowers/train`), so a second project never lands in, or `--restart`s, the first one's run.
    """
    data = os.path.realpath(data)
    cwd = os.path.realpath(cwd or os.getcwd())
    name = os.path.basename(data) or "data"
    digest = hashlib.sha256(data.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    base = cwd if not is_inside(cwd, data) else os.path.dirname(data)
    unique = os.path.join(base, "runs", f"{name}-{digest}")
    earlier = os.path.join(base, "runs", name)  # the default before the hash (issue 35)
    if not os.path.exists(unique) and _run_of(earlier, data):
        return earlier  # an earlier version's run of this folder: resumed where it is
    return unique


def _run_of(folder, data):
    """Whether `folder` holds a run of the data folder `data` that recorded no other source."""
    try:
        with open(os.path.join(folder, IDENTITY_FILE)) as file:
            identity = json.load(file)
    except (OSError, ValueError):
        return False
    return isinstance(identity, dict) and identity.get("source", data) == data


def is_inside(path, folder):
    """Whether `path` is `folder` or below it (real paths)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
