"""A generated forum whose firms each word the shared distillation templates their own way.

Ground truth for the rewording benchmark (``bench/rewording_bench.py``) and the campaign oracle
tests. Ingredients:

- **templates** (``bench/data/rewording_templates.json``): 14 genres × 3 hand-written
  instruction templates of 38–55 words with one ``{input}`` slot. Templates of one genre do the
  same kind of task in their own words — the *hard negatives* that must stay separate campaigns;
- **benign text**: sentences of the Python documentation's help topics (``pydoc_data``, shipped
  with CPython), used as slot fillers, as organic prompts, and as each firm's own repeated
  (benign) prompts, which must never become a campaign across firms;
- **system prompts** (same JSON): each firm's front-end prepends its own to every prompt it logs.

A scenario gives every template to a random subset of at least two firms. Firm 0 sees the
templates as written (unless ``verbatim_first`` is off); every other firm words each template
its own way at rate ``r``: ``round(r · n)`` edits to the template's ``n`` words — substitutions,
insertions, deletions and swaps of neighbours — fixed for all of that firm's prompts of the
template, as one operator's edit would be. Each prompt fills the slot with 5–40 words of
documentation text. With ``front_ends="firm"`` (the default), every firm but the first also
receives its campaign prompts behind a system prompt of its own (5–40 words, one per firm: the
operator's front-end for the fleet that hits that firm); with ``"campaign"``, behind a
different system prompt for every template; with ``"none"``, bare.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from itertools import combinations
from pathlib import Path

TEMPLATES_FILE = Path(__file__).parent / "data" / "rewording_templates.json"
SLOT = "{input}"
BENIGN = -1
"""Label of organic prompts and of a firm's own repeated benign prompts (never a campaign)."""

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True, slots=True)
class Corpus:
    genres: tuple[tuple[str, tuple[str, ...]], ...]
    system_prompts: tuple[str, ...]
    sentences: tuple[str, ...]
    """Benign documentation sentences, 5–40 words, ASCII."""
    vocabulary: tuple[str, ...]
    """Words that substitutions and insertions draw from."""

    @property
    def templates(self) -> list[str]:
        return [template for _, group in self.genres for template in group]

    @property
    def genre_of(self) -> list[int]:
        return [index for index, (_, group) in enumerate(self.genres) for _ in group]

    def sibling_pairs(self) -> list[tuple[int, int]]:
        """Pairs of template indices in one genre: the hard negatives."""
        pairs: list[tuple[int, int]] = []
        start = 0
        for _, group in self.genres:
            pairs += list(combinations(range(start, start + len(group)), 2))
            start += len(group)
        return pairs


@cache
def load_corpus() -> Corpus:
    document = json.loads(TEMPLATES_FILE.read_text())
    genres = tuple((name, tuple(group)) for name, group in document["genres"].items())
    sentences = _documentation_sentences()
    words = sorted({word.lower() for sentence in sentences for word in _WORD.findall(sentence)})
    return Corpus(
        genres=genres,
        system_prompts=tuple(document["system_prompts"]),
        sentences=sentences,
        vocabulary=tuple(word for word in words if len(word) > 2),
    )


def _documentation_sentences() -> tuple[str, ...]:
    from pydoc_data.topics import topics

    # The documentation repeats itself ("For certain sensitive attribute assignments, raises an
    # auditing event ..." / "... deletions, ..."): one sentence per opening and per ending, so
    # that sentences given to different firms are unrelated.
    by_opening: dict[str, str] = {}
    for text in topics.values():
        for paragraph in text.split("\n\n"):
            flat = " ".join(paragraph.split())
            if not flat.isascii() or flat.startswith((">>>", "...")):
                continue
            for sentence in _SENTENCE_END.split(flat):
                words = [word.lower() for word in _WORD.findall(sentence)]
                if 5 <= len(words) <= 40 and sentence[:1].isupper():
                    by_opening.setdefault(" ".join(words[:3]), sentence)
    sizes: list[int] = []
    by_ending = {" ".join(_WORD.findall(s.lower())[-3:]): s for s in sorted(by_opening.values())}
    # ... and none sharing half its longer words with one kept before it.
    kept: list[str] = []
    holders: dict[str, list[int]] = defaultdict(list)
    for sentence in sorted(by_ending.values()):
        long_words = {word.lower() for word in _WORD.findall(sentence) if len(word) > 3}
        overlap: dict[int, int] = defaultdict(int)
        for word in long_words:
            for other in holders[word]:
                overlap[other] += 1
        if any(2 * n >= min(len(long_words), sizes[other]) for other, n in overlap.items()):
            continue
        for word in long_words:
            holders[word].append(len(kept))
        sizes.append(len(long_words))
        kept.append(sentence)
    return tuple(kept)


def reword(
    words: list[str], rate: float, rng: random.Random, vocabulary: tuple[str, ...]
) -> list[str]:
    """``words`` with ``round(rate · len(words))`` edits at distinct positions: substitutions
    (40 %), insertions (20 %), deletions (20 %) and swaps with the next word (20 %)."""
    edits = round(rate * len(words))
    positions = sorted(rng.sample(range(len(words)), min(edits, len(words))), reverse=True)
    out = list(words)
    for position in positions:  # right to left: earlier positions stay valid
        draw = rng.random()
        if draw < 0.4:
            out[position] = rng.choice(vocabulary)
        elif draw < 0.6:
            out.insert(position, rng.choice(vocabulary))
        elif draw < 0.8:
            del out[position]
        elif position + 1 < len(out):
            out[position], out[position + 1] = out[position + 1], out[position]
    return out


def reword_template(
    template: str, rate: float, rng: random.Random, vocabulary: tuple[str, ...]
) -> str:
    """The template reworded around its slot (the slot itself stays, at its place)."""
    before, _, after = template.partition(SLOT)
    head, tail = before.split(), after.split()
    edited = reword([*head, SLOT, *tail], rate, rng, vocabulary)
    if SLOT not in edited:  # a deletion took the slot: put it back where it was
        edited.insert(min(len(head), len(edited)), SLOT)
    return " ".join(edited)


@dataclass
class Firm:
    name: str
    prompts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    """Template index of each prompt, or :data:`BENIGN`."""


@dataclass
class Scenario:
    rate: float
    firms: list[Firm]
    holders: dict[int, frozenset[int]]
    """Template index → the firms whose traffic contains it."""
    corpus: Corpus


def generate(
    rate: float,
    *,
    seed: int,
    firms: int = 4,
    prompts_per_template: tuple[int, int] = (12, 40),
    benign_clusters: int = 12,
    organic_prompts: int = 200,
    front_ends: str = "firm",
    verbatim_first: bool = True,
) -> Scenario:
    """One forum at rewording rate ``rate`` (see the module docstring)."""
    corpus = load_corpus()
    rng = random.Random(seed)  # the same firms, holders and fillers at every rate
    edits = random.Random(f"{seed}/{rate}")
    names = [f"firm-{index}" for index in range(firms)]
    out = [Firm(name) for name in names]
    holders: dict[int, frozenset[int]] = {}
    for template_index, template in enumerate(corpus.templates):
        size = rng.randint(2, firms)
        holders[template_index] = frozenset(rng.sample(range(firms), size))
        for holder in sorted(holders[template_index]):
            wording = (
                template
                if holder == 0 and verbatim_first
                else reword_template(template, rate, edits, corpus.vocabulary)
            )
            if front_ends == "campaign" and holder > 0:  # the operator's own, per template
                wording = f"{rng.choice(corpus.system_prompts)} {wording}"
            for _ in range(rng.randint(*prompts_per_template)):
                out[holder].prompts.append(wording.replace(SLOT, _filler(rng, corpus)))
                out[holder].labels.append(template_index)
    for index, firm in enumerate(out):
        # Benign traffic is unrelated across firms: each draws from its own share of sentences.
        own_sentences = corpus.sentences[index::firms]
        for _ in range(benign_clusters):  # the firm's own repeated prompts
            own = rng.choice(own_sentences) + " " + SLOT
            for _ in range(rng.randint(3, 12)):
                firm.prompts.append(own.replace(SLOT, _filler(rng, corpus)))
                firm.labels.append(BENIGN)
        for _ in range(organic_prompts):
            firm.prompts.append(" ".join(rng.sample(own_sentences, rng.randint(1, 3))))
            firm.labels.append(BENIGN)
    for index, firm in enumerate(out):
        if front_ends == "firm" and index > 0:
            prefix = corpus.system_prompts[(seed * firms + index) % len(corpus.system_prompts)]
            firm.prompts = [
                f"{prefix} {prompt}" if label != BENIGN else prompt
                for prompt, label in zip(firm.prompts, firm.labels, strict=True)
            ]
        order = list(range(len(firm.prompts)))
        rng.shuffle(order)
        firm.prompts = [firm.prompts[i] for i in order]
        firm.labels = [firm.labels[i] for i in order]
    return Scenario(rate=rate, firms=out, holders=holders, corpus=corpus)


def _filler(rng: random.Random, corpus: Corpus) -> str:
    words: list[str] = []
    target = rng.randint(5, 40)
    while len(words) < target:
        words += rng.choice(corpus.sentences).split()
    return " ".join(words[:target])
