"""s2s engine: the public API that task plugins use.

Plugins import from here only: the `Task` base class and the ready-made sides,
`Scores`, `Key` for their own settings, `UserError`, and file readers.
"""
from .errors import UserError
from .settings import Key, Settings
from .task import LabelTarget, Scores, SourceSide, TargetSide, Task, TextSource, TextTarget, pad_ids
from .textfiles import read_jsonl, read_lines, require_field

__all__ = ["UserError", "Key", "Settings", "Task", "Scores", "SourceSide", "TargetSide", "TextSource",
           "TextTarget", "LabelTarget", "pad_ids", "read_lines", "read_jsonl", "require_field"]
