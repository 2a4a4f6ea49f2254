"""Hydra override text helpers. Pure: stdlib only, no I/O.

A value reaches a job's config through two layers, and `quote_value` escapes for both:
1. Hydra's override grammar. Inside a quoted value only a quote and a run of backslashes *just before* a
   quote (or before the closing quote) are special: such a run is halved, and an odd run escapes the
   quote. Every other character, backslashes included, stands for itself.
2. OmegaConf, which resolves any string value containing `${` as an interpolation. There `\\${` is a
   literal `${`, and a run of backslashes just before `${` is halved; other backslashes are literal.
"""
import logging
import re

log = logging.getLogger(__name__)

# A run of backslashes followed by `${` (OmegaConf layer).
_BACKSLASHES_BEFORE_INTERPOLATION = re.compile(r"(\\*)\$\{")
# A run of backslashes followed by the quote character or the end of the text (Hydra layer).
_BACKSLASHES_BEFORE = {q: re.compile(r"(\\*)(" + q + r"|\Z)") for q in ("'", '"')}


def escape_interpolations(text: str) -> str:
    """`text` as an OmegaConf string value that resolves back to `text`, never interpolating.

    Only backslashes before `${` need escaping: n backslashes + `${` become 2n+1 backslashes + `${`.
    """
    return _BACKSLASHES_BEFORE_INTERPOLATION.sub(lambda m: m.group(1) * 2 + "\\${", text)


def quote_value(text: str) -> str:
    """A Hydra override value that sets a config value to exactly `text`, always as a string.

    `null`, `true`, `1e3`, commas, brackets, `=`, spaces, quotes, backslashes and `${...}` all stay
    literal text. OverridesParser reads it back as `text` itself, except that `${` comes back escaped
    for OmegaConf (`\\${`), which the config then resolves to `text`.
    """
    value = escape_interpolations(text)
    # The quote that needs fewer escapes keeps the value readable; single quotes on a tie.
    quote = "'" if value.count("'") <= value.count('"') else '"'
    body = _BACKSLASHES_BEFORE[quote].sub(lambda m: _escape_run(m, quote), value)
    return f"{quote}{body}{quote}"


def _escape_run(match: "re.Match[str]", quote: str) -> str:
    # Hydra halves a backslash run before a quote; an extra backslash makes an inner quote literal.
    backslashes, end = match.group(1), match.group(2)
    return backslashes * 2 + ("\\" + quote if end else "")
