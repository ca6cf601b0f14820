"""The structured strategy editor: a flag's strategies (with their constraints and strategy
variants) and its variants as Django formsets, so an operator builds a gradual rollout with
a constraint without typing JSON. It works without JavaScript (rows are added by a submit
button the server answers); ``static/js/flag_editor.js`` adds and removes rows in place and
keeps the operator list fitting the chosen context field.

The editor only collects: every field is text or a checkbox and passes through as the
operator typed it (``"abc"`` as a rollout included), because the server's validation
(``apps.flags.validation``) is the one validator and says in words what is wrong, keyed by
path (``strategies.0.constraints.1.values``), which ``add_errors`` shows on the row.

What the rows cannot show (a variant's overrides, parameters of no known strategy) rides
along in hidden JSON fields, so switching to the JSON view and back loses nothing."""

from .formsets import StrategyBlock, StrategyEditor
from .rows import CONTEXT_FIELDS, STICKINESS, ConstraintForm, StrategyForm, VariantForm

__all__ = [
    "CONTEXT_FIELDS",
    "STICKINESS",
    "ConstraintForm",
    "StrategyBlock",
    "StrategyEditor",
    "StrategyForm",
    "VariantForm",
]
