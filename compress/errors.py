"""Typed errors. Every user-facing failure is a `CompressError` with an exit code.

The CLI prints `str(error)` as one line and exits with `error.exit_code`; a
traceback is shown only for bugs (anything that is not a `CompressError`).
"""

from __future__ import annotations

import difflib
import errno
import os
from collections.abc import Iterable
from pathlib import Path


class CompressError(Exception):
    """Base of every error the toolkit raises on purpose."""

    exit_code = 1


class UserError(CompressError):
    """The user asked for something that cannot be done as asked (exit 2)."""

    exit_code = 2


class RecipeError(UserError):
    """A recipe problem, located at `file:line key`.

    >>> str(RecipeError("must be < 1 (got 1.5)", file="r.yaml", line=14, key="passes[2].prune.x"))
    'r.yaml:14 passes[2].prune.x: must be < 1 (got 1.5)'
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.key = key
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.file or "<recipe>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where} {self.key}: {self.message}" if self.key else f"{where}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class DataError(UserError):
    """The data could not be read or does not fit the task."""


class ModelLoadError(UserError):
    """A model could not be found or loaded."""


_NOT_PERMITTED = (errno.EACCES, errno.EPERM)
# a file where a folder goes, a folder where a file goes, a leftover where a folder is made
_IN_THE_WAY = (errno.EISDIR, errno.ENOTDIR, errno.EEXIST)


class OutputError(UserError):
    """The run folder cannot be written: no space left, read-only, or no permission."""

    @staticmethod
    def caused(exc: BaseException, folder: Path) -> bool:
        """Whether `exc` is a failed write below `folder` (full, read-only, not permitted,
        or a file or folder in the way)."""
        if not isinstance(exc, OSError):
            return False
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            return True
        if (exc.errno in _NOT_PERMITTED or exc.errno in _IN_THE_WAY) and exc.filename:
            target = Path(os.fsdecode(exc.filename)).absolute()
            return target.is_relative_to(folder.absolute())
        return False

    @classmethod
    def from_os_error(cls, exc: OSError, where: str | Path) -> OutputError:
        """`where: cannot write (No space left on device: file); ...` for a failed write."""
        detail = exc.strerror or str(exc)
        if exc.filename:
            detail += f": {exc.filename}"
        if exc.errno in _IN_THE_WAY:
            fix = "move what is in the way or choose another --out"
        elif exc.errno in _NOT_PERMITTED or exc.errno == errno.EROFS:
            fix = "choose a folder you can write to as --out"
        else:
            fix = "free some space or choose another --out"
        return cls(f"{where}: cannot write ({detail}); {fix}")


class MissingDependencyError(UserError):
    """An optional backend a recipe needs is not installed.

    `package` may name alternatives, any one of which would do:

    >>> str(MissingDependencyError(("tensorrt", "tensorrt_rtx"), "pass 'tensorrt'", "pip ..."))
    "pass 'tensorrt' needs 'tensorrt' or 'tensorrt_rtx', and neither is installed: pip ..."
    """

    def __init__(self, package: str | tuple[str, ...], needed_for: str, install: str) -> None:
        names = (package,) if isinstance(package, str) else package
        if len(names) == 1:
            what = f"'{names[0]}', which is not installed"
        else:
            listed = " or ".join(f"'{name}'" for name in names)
            what = f"{listed}, and {'neither' if len(names) == 2 else 'none'} is installed"
        super().__init__(f"{needed_for} needs {what}: {install}")


class ExportParityError(CompressError):
    """An exported model disagrees with its source beyond the tolerance."""

    def __init__(self, what: str, diffs: dict[str, float], atol: float) -> None:
        self.diffs = diffs
        detail = ", ".join(f"{name}: max |diff| {value:.3g}" for name, value in diffs.items())
        super().__init__(f"{what} does not match its source model at atol={atol:g}: {detail}")


class RegressionFound(CompressError):
    """A benchmark comparison found a regression beyond the thresholds (exit 3)."""

    exit_code = 3


class LintFailed(CompressError):
    """A model check ran and found errors (exit 3, like a regression)."""

    exit_code = 3


class PassFailed(CompressError):
    """A pass ran but could not produce its artifact."""


class EngineBuildError(PassFailed):
    """TensorRT rejected a model: its ONNX parser refused nodes, or the builder failed.

    Each problem names the node (or the builder message) it is about.
    """

    def __init__(self, what: str, problems: list[str]) -> None:
        self.problems = problems
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(f"{what}: {shown}{more}")


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """Return a hint such as "did you mean 'quantize'?" for a misspelt name."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


class PeerFailed(CompressError):
    """Another process of a multi-process run failed; its own output says why."""
