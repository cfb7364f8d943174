"""The synthetic forum's rewording: placeholders intact, edits bounded, truth consistent."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigshare.client.synthetic import (
    CAMPAIGN_TEMPLATES,
    SLOT,
    FirmData,
    SyntheticForum,
    campaign_template,
    generate_forum,
    reword_template,
    wording_similarity,
)

PROPERTY = settings(derandomize=True, deadline=None, max_examples=100)


def _small_forum(seed: int, reword_rate: float = 0.2) -> SyntheticForum:
    return generate_forum(
        seed,
        accounts_per_firm=100,
        prompts_per_campaign=(3, 6),
        organic_prompts=5,
        reword_rate=reword_rate,
    )


def _edit_distance(first: list[str], second: list[str]) -> int:
    """Word-level Levenshtein distance (substitution, insertion, deletion: cost 1 each)."""
    previous = list(range(len(second) + 1))
    for i, word in enumerate(first, 1):
        current = [i]
        for j, other in enumerate(second, 1):
            substitution = previous[j - 1] + (word != other)
            current.append(min(previous[j] + 1, current[j - 1] + 1, substitution))
        previous = current
    return previous[-1]


def _placeholders(text: str) -> list[str]:
    return [word for word in text.split() if "{" in word]


@PROPERTY
@given(
    template=st.sampled_from(CAMPAIGN_TEMPLATES),
    rate=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32),
)
def test_rewording_keeps_placeholders_and_makes_at_most_its_edits(
    template: str, rate: float, seed: int
) -> None:
    reworded = reword_template(template, rate, random.Random(seed))
    # Placeholders are never substituted, deleted or moved past each other.
    assert _placeholders(reworded) == _placeholders(template)
    words = [word for word in template.split() if "{" not in word]
    edits = round(rate * len(words))
    # Each edit is one substitution, insertion or deletion, or a swap (two substitutions).
    assert _edit_distance(template.split(), reworded.split()) <= 2 * edits
    assert abs(len(reworded.split()) - len(template.split())) <= edits


def test_rewording_at_rate_zero_is_the_template() -> None:
    for template in CAMPAIGN_TEMPLATES:
        assert reword_template(template, 0.0, random.Random(1)) == template


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_rewording_rejects_rates_outside_zero_to_one(rate: float) -> None:
    with pytest.raises(ValueError, match="rewording rate"):
        reword_template(CAMPAIGN_TEMPLATES[0], rate, random.Random(1))
    with pytest.raises(ValueError, match="reword_rate"):
        generate_forum(reword_rate=rate)


def test_wording_similarity_is_the_jaccard_of_canonical_word_sets() -> None:
    # {the, cat, sat} vs {the, cat, ran}: 2 shared of 4; case and the slot are ignored.
    assert wording_similarity(f"The cat sat. {SLOT}", f"the CAT ran {SLOT}") == 0.5
    assert wording_similarity("a b c", "c b a b") == 1.0
    assert wording_similarity("a b", "c d") == 0.0


def test_every_firm_but_the_first_words_each_template_its_own_way() -> None:
    forum = _small_forum(3)
    assert forum.reword_rate == 0.2
    for campaign, owners in forum.campaign_firms.items():
        wordings = forum.campaign_wordings[campaign]
        assert set(wordings) == set(owners)
        for firm, wording in wordings.items():
            if firm == 0:
                assert wording == campaign_template(campaign)
            else:
                assert wording_similarity(wording, campaign_template(campaign)) < 1.0
            # Every prompt of the campaign at this firm is this wording with its slot filled.
            before, after = wording.split(SLOT)
            prompts = [
                prompt
                for prompt, label in zip(
                    forum.firms[firm].prompts, forum.firms[firm].prompt_campaign, strict=True
                )
                if label == campaign
            ]
            assert prompts
            for prompt in prompts:
                assert prompt.startswith(before)
                assert prompt.endswith(after)
                assert len(prompt) > len(before) + len(after)
        held = [firm for firm in sorted(owners) if firm > 0]
        assert len({wordings[firm] for firm in held}) == len(held)


def test_the_forum_is_reproducible_and_only_the_wordings_depend_on_the_rate() -> None:
    reworded = _small_forum(5)
    assert _small_forum(5) == reworded
    verbatim = _small_forum(5, 0.0)
    assert verbatim.account_holders == reworded.account_holders
    assert verbatim.campaign_firms == reworded.campaign_firms
    for plain, edited in zip(verbatim.firms, reworded.firms, strict=True):
        assert plain.indicators == edited.indicators
        assert plain.prompt_campaign == edited.prompt_campaign
        assert _organic(plain) == _organic(edited)
    for campaign, wordings in verbatim.campaign_wordings.items():
        assert set(wordings.values()) == {campaign_template(campaign)}


def _organic(firm: FirmData) -> list[str]:
    return [p for p, label in zip(firm.prompts, firm.prompt_campaign, strict=True) if label < 0]
