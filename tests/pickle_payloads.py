"""Objects whose pickle runs code when unpickled: what a malicious checkpoint carries."""

from __future__ import annotations

import builtins
import os


class System:
    """Unpickles to ``os.system(cmd)``."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class Exec:
    """Unpickles to ``exec(code)``."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (builtins.exec, (self.code,))
