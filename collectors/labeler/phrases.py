"""Longest-match phrase lookup over word tokens: finding terms and NegEx/ConText triggers.

Used by the report labeler (collectors/labeler) on the tokens of one sentence
(collectors.labeler.text). A phrase is lower-case words; "*" stands for any one word and
"~" for at most one optional word ("heart is ~ enlarged" also reads "heart is mildly
enlarged"). Matches never overlap: at each position the longest phrase wins, so a
pseudo-trigger ("no increase") hides the shorter trigger inside it ("no"), as NegEx
prescribes (Chapman et al. 2001, J Biomed Inform 34:301).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from collectors.labeler.text import Token, tokens

V = TypeVar("V")
WILDCARD = "*"
OPTIONAL = "~"


@dataclass(frozen=True)
class Match(Generic[V]):
    """Tokens [first, last] (inclusive, indexes into the sentence's tokens) matched a phrase."""

    first: int
    last: int
    value: V


def split_phrase(phrase: str) -> tuple[str, ...]:
    """A phrase's tokens, tokenised exactly as report text is ("can't" stays one token)."""
    return tuple(t.norm for t in tokens(phrase, 0, len(phrase)))


def _expand(words: tuple[str, ...]) -> list[tuple[str, ...]]:
    # Each "~" becomes two variants: the word left out, or any one word there.
    variants: list[tuple[str, ...]] = [()]
    for word in words:
        if word == OPTIONAL:
            variants = [v + extra for v in variants for extra in ((), (WILDCARD,))]
        else:
            variants = [v + (word,) for v in variants]
    return [v for v in variants if v and v[0] != WILDCARD]


class PhraseMatcher(Generic[V]):
    """Finds phrases in a token list; built once per labeler, then read-only."""

    def __init__(self, phrases: Iterable[tuple[str, V]]) -> None:
        self._by_first: dict[str, list[tuple[tuple[str, ...], V]]] = {}
        for phrase, value in phrases:
            for words in _expand(split_phrase(phrase)):
                self._by_first.setdefault(words[0], []).append((words, value))
        for entries in self._by_first.values():
            entries.sort(key=lambda entry: len(entry[0]), reverse=True)

    def find(self, toks: Sequence[Token]) -> list[Match[V]]:
        """Non-overlapping matches, left to right, the longest phrase at each position."""
        found: list[Match[V]] = []
        index = 0
        while index < len(toks):
            hit = self._longest_at(toks, index)
            if hit is None:
                index += 1
                continue
            found.append(hit)
            index = hit.last + 1
        return found

    def _longest_at(self, toks: Sequence[Token], index: int) -> Match[V] | None:
        for words, value in self._by_first.get(toks[index].norm, ()):
            end = index + len(words)
            if end <= len(toks) and all(
                w == t.norm or (w == WILDCARD and t.is_word)
                for w, t in zip(words[1:], toks[index + 1 : end], strict=True)
            ):
                return Match(index, end - 1, value)
        return None
