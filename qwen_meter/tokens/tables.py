"""Where the tokens layer gets its parsed tables (``tokenizers``, ``templates``) from.

Parsing the YAML files costs more than loading a tokenizer, and the model index (in the
``billing`` layer, above this one) already holds both tables as JSON. The index installs itself
here as the source when it is loaded; until then, and without it, each table is parsed from
``data/``. The tokens layer never imports the index: the layer above passes it down.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_source: Callable[[str], Any] | None = None


def set_table_source(source: Callable[[str], Any] | None) -> None:
    """Install (or, with None, remove) the function that returns a parsed table by name, or
    None when it has none loaded."""
    global _source
    _source = source


def loaded_table(name: str) -> Any:
    """The parsed ``tokenizers`` or ``templates`` table if a source has it loaded, else None
    (the caller then parses the file)."""
    return None if _source is None else _source(name)
