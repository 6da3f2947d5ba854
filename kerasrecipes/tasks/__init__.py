"""The tasks `fine_tune` trains, one module each, registered by name (`kerasrecipes.tasks.base`).

- `classification`: a head on the pooled features, class folders;
- `segmentation`: a U-Net decoder, image and mask folders;
- `detection`: a RetinaNet, COCO annotations.

A new task is one module that subclasses `Task` and calls `register_task`;
`FineTuneConfig(task=...)`, `fine_tune`, the report and the command find it
by name.
"""

from kerasrecipes.tasks.base import (
    Task,
    TaskDefaults,
    all_run_files,
    get_task,
    register_task,
    task_names,
)

__all__ = ["Task", "TaskDefaults", "all_run_files", "get_task", "register_task", "task_names"]
