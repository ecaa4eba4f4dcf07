"""What every validated block of options shares: frozen, and an unknown key is an error.

Recipe sections, pass configs, benchmark settings and suite files all derive
from `StrictOptions`, so a misspelt key anywhere fails validation instead of
being ignored.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


class StrictOptions(BaseModel):
    """Base of every option block: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def changed(self, names: tuple[str, ...]) -> list[str]:
        """Those of `names` whose value is not the default (a resolved recipe names every
        option, so "set in the file" cannot tell a user's choice from a default)."""
        fields = type(self).model_fields
        return [
            n for n in names if getattr(self, n) != fields[n].get_default(call_default_factory=True)
        ]


def _valid_regexes(value: list[str]) -> list[str]:
    for pattern in value:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"'{pattern}' is not a valid regex ({exc})") from None
    return value


RegexList = Annotated[list[str], AfterValidator(_valid_regexes)]
"""A list of regular expressions, each checked when the recipe is validated."""
