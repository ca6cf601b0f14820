"""Names a person reads must be the names a machine compares: no hidden characters, one
Unicode form, no look-alike of another name.

Shared by bundle tool names (``apps.bundles.validation``) and flag names
(``apps.flags.validation``). Pure functions over strings; no Django, so any app may import
it without crossing the import-linter layers.

- ``first_hidden_character`` / ``hidden_character_message``: control characters, invisible
  formatting (zero-width space and joiners, bidirectional overrides and isolates, the BOM)
  and line or paragraph separators (Unicode categories Cc, Cf, Zl, Zp) hide or reorder what
  a reviewer reads.
- ``not_normalized_message``: a name that changes under NFC normalisation has a twin that
  looks the same but is other bytes (``é`` as one code point or as ``e`` + combining
  accent); one that changes under NFKC uses compatibility characters (full-width ``flag``).
- ``mixed_script_message``: a name mixing scripts with a confusable letter (a Cyrillic
  ``a`` in ``payment``), found with ``confusable_homoglyphs`` (Unicode's confusables data).
- ``lookalike_key``: what two names are compared by to decide that they look alike: NFKC
  (full-width and compatibility forms fold to their plain letters) with every letter that
  Unicode lists as confusable with a Latin one replaced by that Latin letter (UTS #39's
  skeleton idea, restricted to Latin targets)."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from confusable_homoglyphs import confusables

_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def first_hidden_character(text: str) -> str | None:
    """The first control, invisible-formatting or separator character of ``text``, if any."""
    return next((ch for ch in text if unicodedata.category(ch) in _HIDDEN_CATEGORIES), None)


def hidden_character_message(text: str) -> str | None:
    """A field error for a name with a hidden character, or None when it has none."""
    ch = first_hidden_character(text)
    if ch is None:
        return None
    return (
        f"Contains a control or invisible character (U+{ord(ch):04X}); names must be plain, "
        "visible text."
    )


def not_normalized_message(text: str) -> str | None:
    """A field error for a name that is not in Unicode normalisation form NFC (a combining
    accent where one character exists) or that uses compatibility characters NFKC folds
    (full-width letters, ligatures, superscripts), or None."""
    if not unicodedata.is_normalized("NFC", text):
        return (
            "Not in Unicode NFC form (a combining accent where one character exists): it "
            f"looks exactly like {unicodedata.normalize('NFC', text)!r} but is another name. "
            "Write it in NFC."
        )
    if not unicodedata.is_normalized("NFKC", text):
        return (
            "Uses compatibility characters (full-width letters, ligatures or superscripts): "
            f"it reads like {unicodedata.normalize('NFKC', text)!r} but is another name. "
            "Write that instead."
        )
    return None


def mixed_script_message(text: str) -> str | None:
    """A field error for a name that mixes scripts and has a letter that Unicode lists as
    confusable with a Latin one (``new`` with a Cyrillic ``e``), or None. A name mixing
    scripts without such a letter (``日本語-flag``) is fine."""
    if not confusables.is_mixed_script(text):
        return None
    ch = next((c for c in text if not c.isascii() and _latin_lookalike(c) != c), None)
    if ch is None:
        return None
    return (
        f"Mixes scripts with a look-alike letter ({unicodedata.name(ch, '?').title()}, "
        f"U+{ord(ch):04X}, reads like {_latin_lookalike(ch)!r}): use one script."
    )


@lru_cache(maxsize=4096)
def _latin_lookalike(ch: str) -> str:
    if ch.isascii():
        return ch
    found = confusables.is_confusable(ch, greedy=True, preferred_aliases=["latin"]) or []
    for entry in found:
        for glyph in entry["homoglyphs"]:
            if glyph["c"].isascii():
                return str(glyph["c"])
    return ch


def lookalike_key(text: str) -> str:
    """The form two names are compared in: equal keys mean the names look alike."""
    return "".join(_latin_lookalike(ch) for ch in unicodedata.normalize("NFKC", text))


def name_problem(text: str) -> str | None:
    """The first reason ``text`` cannot be a name people and machines agree on, or None:
    hidden characters, a form other than NFC, mixed scripts with a look-alike letter."""
    return (
        hidden_character_message(text) or not_normalized_message(text) or mixed_script_message(text)
    )
