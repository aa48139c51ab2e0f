"""NegEx/ConText trigger terms and their scopes: is a finding's mention affirmed, negated
or uncertain?

Middle step of the report labeler (collectors/labeler): it gets one sentence's tokens
(collectors.labeler.text) and the finding mentions found in them, and returns a status per
mention. The algorithm is ConText (Harkema et al. 2009, J Biomed Inform 42:839), which
extends NegEx (Chapman et al. 2001, J Biomed Inform 34:301):
- a pre-trigger ("no", "possible") governs the words after it, a post-trigger
  ("is not seen", "cannot be excluded") the words before it;
- the scope runs to the sentence's end, stops at a termination term ("but", "however") and
  here also after `MAX_SCOPE_WORDS` words, so a long list after "no evidence of" is covered
  while a trigger does not reach across a run-on sentence;
- pseudo-triggers ("no increase", "not only") contain a trigger but govern nothing;
- when several triggers reach a mention, the nearest one decides.
The trigger lists follow NegEx's published list and ConText's `negated`/`uncertain`
(hypothetical, possible) cues, with the radiology cues of NegBio/CheXpert (Peng et al.
2018, AMIA Summits Transl Sci Proc 2018:188; Irvin et al. 2019). "Likely" and
"consistent with" are ConText's *probable* existence: they do not make a finding uncertain.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from collectors.labeler.phrases import Match, PhraseMatcher
from collectors.labeler.text import Token

MAX_SCOPE_WORDS = 12


class Cue(StrEnum):
    PRE_NEGATION = "pre_negation"
    POST_NEGATION = "post_negation"
    BI_NEGATION = "bidirectional_negation"
    PSEUDO = "pseudo"
    PRE_UNCERTAINTY = "pre_uncertainty"
    POST_UNCERTAINTY = "post_uncertainty"
    TERMINATION = "termination"


# Label values (the wire contract's numbers): affirmed 1, negated 0, uncertain -1.
POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1

TRIGGERS: dict[Cue, tuple[str, ...]] = {
    Cue.PRE_NEGATION: (
        "no", "not", "without", "denies", "negative for", "free of", "clear of",
        "no evidence of", "no signs of", "no sign of", "no radiographic evidence of",
        "absence of", "resolution of", "no longer", "never",
        "rules out", "ruled out", "nor", "neither", "no new", "no definite",
        "no findings of", "no findings to suggest", "there is no", "there are no",
        "removal of", "interval resolution of", "no visible", "no evidence for",
    ),
    Cue.POST_NEGATION: (
        "is not seen", "are not seen", "not seen", "not identified", "not present",
        "is absent", "are absent", "has resolved", "have resolved",
        "not visualized", "not appreciated", "not demonstrated", "not evident",
        "not detected", "no longer seen", "no longer present", "no longer visualized",
        "is ruled out", "was ruled out", "has been ruled out", "is excluded",
        "are excluded", "not noted", "is gone", "has cleared",
        "have cleared", "not apparent",
    ),
    # Either direction (medspaCy's BIDIRECTIONAL): "resolved effusion", "effusion resolved".
    Cue.BI_NEGATION: ("resolved", "absent", "unlikely", "excluded"),
    Cue.PSEUDO: (
        "no increase", "no interval increase", "no change", "no interval change",
        "no significant change", "no significant interval change", "not only",
        "no decrease", "no worsening", "no improvement", "not necessarily",
        "no suspicious change", "not cause", "not drained", "no further",
        "not certain whether", "not certain if", "gram negative", "without difficulty",
        "not significantly changed", "not changed", "no substantial change",
        "no appreciable change", "no definite change", "not significantly increased",
        "no significant increase",
    ),
    Cue.PRE_UNCERTAINTY: (
        "possible", "possibly", "may represent", "may be", "may reflect",
        "may indicate", "may have", "might", "could be", "could represent",
        "could reflect", "suspicious for", "suspected", "suspect", "questionable",
        "question of", "concern for", "concerning for", "worrisome for", "cannot exclude",
        "can not exclude", "can't exclude", "cannot rule out", "can not rule out",
        "can't rule out", "rule out", "r / o", "versus", "vs", "differential diagnosis",
        "differential includes", "indeterminate", "equivocal", "uncertain",
        "evaluate for", "to exclude", "difficult to exclude", "in the differential",
    ),
    Cue.POST_UNCERTAINTY: (
        "cannot be excluded", "can not be excluded", "can't be excluded", "not excluded",
        "is not excluded", "not ruled out", "cannot be ruled out", "can not be ruled out",
        "is possible", "is suspected", "are suspected", "is questioned",
        "is not entirely excluded", "not entirely excluded", "?", "is difficult to exclude",
        "is questionable", "is equivocal", "not completely excluded", "is uncertain",
        "may be present", "may be seen",
    ),
    Cue.TERMINATION: (
        "but", "however", "although", "though", "aside from", "apart from", "except",
        "which", "yet", "nevertheless", "whereas", "other than", "there is",
        "there are", "with the exception of", "otherwise",
    ),
}  # fmt: skip


_FORWARD = frozenset({Cue.PRE_NEGATION, Cue.PRE_UNCERTAINTY, Cue.BI_NEGATION})
_BACKWARD = frozenset({Cue.POST_NEGATION, Cue.POST_UNCERTAINTY, Cue.BI_NEGATION})


def build_trigger_matcher(triggers: dict[Cue, tuple[str, ...]] = TRIGGERS) -> PhraseMatcher[Cue]:
    # One matcher over all cues, so the longest phrase wins across categories:
    # "cannot be excluded" (uncertain) over "excluded", "no increase" (pseudo) over "no".
    # A phrase listed under two cues keeps the first: the dict's order is the priority.
    seen: dict[str, Cue] = {}
    for cue, phrases in triggers.items():
        for phrase in phrases:
            seen.setdefault(phrase, cue)
    return PhraseMatcher(seen.items())


def assert_mention(
    toks: Sequence[Token],
    mention: Match[Any],
    cues: Sequence[Match[Cue]],
    max_scope: int = MAX_SCOPE_WORDS,
) -> tuple[int, Match[Cue] | None]:
    """The status of one mention (POSITIVE, NEGATIVE, UNCERTAIN) and the cue that set it."""
    best: tuple[int, Match[Cue]] | None = None
    for cue in cues:
        if cue.value in _FORWARD and cue.last < mention.first:
            gap = range(cue.last + 1, mention.first)
        elif cue.value in _BACKWARD and cue.first > mention.last:
            gap = range(mention.last + 1, cue.first)
        else:
            continue
        if _blocked(toks, gap, cues) or _words(toks, gap) >= max_scope:
            continue
        distance = len(gap)
        if best is None or distance < best[0]:
            best = (distance, cue)
    if best is None:
        return POSITIVE, None
    negated = best[1].value in (Cue.PRE_NEGATION, Cue.POST_NEGATION, Cue.BI_NEGATION)
    return (NEGATIVE if negated else UNCERTAIN), best[1]


def _blocked(toks: Sequence[Token], gap: range, cues: Sequence[Match[Cue]]) -> bool:
    # A termination term between trigger and mention closes the scope (ConText).
    return any(c.value is Cue.TERMINATION and c.first in gap for c in cues)


def _words(toks: Sequence[Token], gap: range) -> int:
    # Redacted "XXXX" words and punctuation do not use up the scope.
    return sum(1 for i in gap if toks[i].is_word and not toks[i].is_redacted)
