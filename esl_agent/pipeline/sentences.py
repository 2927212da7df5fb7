"""Incremental sentence splitter for streamed LLM text.

Each complete sentence goes to text-to-speech while the model goes on. A boundary is `. ! ? …`
(or `...`) followed by white space, or a newline. Not a boundary: a dot inside a token (3.5,
10.30, e-mail addresses, URLs), after an abbreviation or an initial (Dr., e.g., z.B.), after an
ordinal before a month (am 24. Dezember), before a lower-case word (an ellipsis that trails on),
or when the text so far holds no letter (list numbers, emoji). A clause that grows past
`max_clause_chars` without a boundary is cut at its next comma. Decisions wait for the characters
they depend on, so the result does not depend on how the text was split into deltas.
"""

from __future__ import annotations

_TERMINALS = ".!?…"
_CLOSERS = "\"')]}»”’"
_OPENERS = "\"'([{«“‘"

# Never end a sentence: titles and abbreviations that are followed by more of the same sentence.
_ABBREVIATIONS = frozenset(
    {
        "dr", "mr", "mrs", "ms", "prof", "st", "jr", "sr", "vs", "ca", "nr", "tel", "str",
        "hr", "fr", "frau", "bzw", "vgl", "ggf", "inkl", "evtl", "approx", "dept", "mt", "ft",
        "e.g", "i.e", "z.b", "d.h", "u.a", "o.ä", "s.o", "u.u", "z.t", "u.s", "u.k", "ph.d",
    }
)
# Month names after an ordinal ("am 3. März", "the 3. May" is rare but harmless).
_MONTHS = frozenset(
    {
        "januar", "jänner", "februar", "märz", "april", "mai", "juni", "juli", "august",
        "september", "oktober", "november", "dezember", "january", "february", "march", "may",
        "june", "july", "october", "december",
    }
)

_NEED_MORE = None  # a decision that depends on characters that have not arrived yet


class SentenceSplitter:
    """Turn a stream of text deltas into complete sentences, as early as they are certain."""

    def __init__(self, max_clause_chars: int = 120) -> None:
        self.max_clause_chars = max_clause_chars
        self._buf = ""
        self._pos = 0  # next index of _buf to examine

    def push(self, delta: str) -> list[str]:
        """Add a delta; return the sentences it completed (stripped, in order)."""
        self._buf += delta
        return self._scan(final=False)

    def flush(self) -> list[str]:
        """End of the reply: return whatever is left as the last sentence(s)."""
        out = self._scan(final=True)
        rest = self._buf.strip()
        if rest:
            out.append(rest)
        self._buf = ""
        self._pos = 0
        return out

    # ------------------------------------------------------------------------------ internals

    def _scan(self, final: bool) -> list[str]:
        out: list[str] = []
        while True:
            self._buf = self._buf.lstrip()
            if self._pos == 0 and not self._buf:
                return out
            end = self._next_boundary(final)
            if end is None:
                return out
            sentence = self._buf[:end].strip()
            self._buf = self._buf[end:]
            self._pos = 0
            if sentence:
                out.append(sentence)

    def _next_boundary(self, final: bool) -> int | None:
        """Index just after the next sentence end, or None when undecided or none yet."""
        buf = self._buf
        i = self._pos
        while i < len(buf):
            ch = buf[i]
            if ch == "\n":
                if _has_letter(buf[:i]):
                    return i
                i += 1
                continue
            if ch in _TERMINALS:
                decision, after = self._terminal(i, final)
                if decision is _NEED_MORE:
                    self._pos = i
                    return None
                if decision:
                    return after
                i = after
                continue
            if ch in ",;" and i >= self.max_clause_chars:
                if i + 1 >= len(buf):
                    if final:
                        return i + 1
                    self._pos = i
                    return None
                if buf[i + 1].isspace():
                    return i + 1
            i += 1
        self._pos = i
        return None

    def _terminal(self, i: int, final: bool) -> tuple[bool | None, int]:
        """Decide the run of terminal punctuation starting at i: (is_boundary, index after it)."""
        buf = self._buf
        j = i
        while j < len(buf) and buf[j] in _TERMINALS:
            j += 1
        while j < len(buf) and buf[j] in _CLOSERS:
            j += 1
        run = buf[i:j].rstrip(_CLOSERS)
        if j >= len(buf):
            return (True if final else _NEED_MORE), j
        if not buf[j].isspace():
            return False, j  # 3.5, 10.30, a.b@c.de, example.com/x, "?!" inside a token
        if not _has_letter(buf[:i]):
            return False, j  # "1." of a list, an emoji line
        dotted = run in (".", "...", "…") or set(run) == {"."}
        if not dotted:
            return True, j  # ! and ? (with or without more marks)
        token = _token_before(buf, i)
        if run == "." and _is_abbreviation(token):
            return False, j
        k = j
        while k < len(buf) and buf[k].isspace():
            k += 1
        if "\n" in buf[j:k]:
            return True, j
        if k >= len(buf):
            return (True if final else _NEED_MORE), j
        if buf[k].islower():
            return False, j  # "Well... maybe", "etc. and", "a.m. tomorrow"
        if run == "." and token.isdigit():
            word_end = k
            while word_end < len(buf) and buf[word_end].isalpha():
                word_end += 1
            if word_end >= len(buf) and not final:
                return _NEED_MORE, j
            if buf[k:word_end].lower() in _MONTHS:
                return False, j
        return True, j


def _token_before(buf: str, i: int) -> str:
    start = i
    while start > 0 and not buf[start - 1].isspace():
        start -= 1
    return buf[start:i].lstrip(_OPENERS)


def _is_abbreviation(token: str) -> bool:
    low = token.lower()
    if low in _ABBREVIATIONS or low.rsplit("-", 1)[-1] in _ABBREVIATIONS:  # "Haupt-Str."
        return True
    return len(token) == 1 and token.isalpha() and token.isupper()  # an initial: "J. Smith"


def _has_letter(text: str) -> bool:
    return any(c.isalpha() for c in text)
