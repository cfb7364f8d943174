"""Deterministic synthetic forum data with known ground truth, for the demo, tests and benchmarks.

Accounts overlap across firms in planned ways and are spelled differently by each firm (case,
spacing, phone formats), so canonicalisation is exercised. Prompt campaigns are distillation-style
templates whose slots each firm fills with its own varied content; some campaigns are seen by
two or three firms, some by one, and every firm also has organic traffic.

As in a real forum, firms do not see a campaign's template word for word alike: the operator
adapts it for each target. The first firm sees every template as written; every other firm sees
each template reworded its own way at rate ``r`` (:func:`reword_template`): ``round(r · n)``
edits to the template's ``n`` words (substitutions, insertions, deletions, swaps of neighbours),
fixed for all of that firm's prompts of the template. The ``{subject}`` and ``{slot}``
placeholders are never edited.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import combinations

from sigshare.sketch.text import canonical_words

_WORD_TEXT = (
    "time year people way day man thing woman life child world school state family student "
    "group country problem hand part place case week company system program question work "
    "government number night point home water room mother area money story fact month lot "
    "right study book eye job word business issue side kind head house service friend father "
    "power hour game line end member law car city community name president team minute idea "
    "kid body information back parent face others level office door health person art war "
    "history party result change morning reason research girl guy moment air teacher force "
    "education foot boy age policy music market sense nation plan college interest death "
    "experience effect use class control care field development role effort rate heart drug "
    "show leader light voice wife police mind price report decision son view relationship "
    "town road arm difference value building action model season society tax director "
    "position player record paper space ground form event official matter center couple site "
    "project activity star table need court oil situation cost industry figure street image "
    "phone data picture practice piece land product doctor wall patient worker news test "
    "movie north love support technology step baby computer type attention film tree source "
    "organization hair window evidence population site garden river answer energy weather "
    "travel recipe garden "
)
WORDS: tuple[str, ...] = tuple(_WORD_TEXT.split())

CAMPAIGN_TEMPLATES = (
    "You are an expert {subject} tutor. Solve the following problem step by step, showing every "
    "intermediate calculation and the reasoning behind it, then state the final answer on its "
    "own line prefixed with ANSWER. Do not skip any step even if it seems obvious. Problem: {slot}",
    "Rewrite the following passage in the style of a formal academic abstract. Preserve all "
    "technical terms exactly, keep it under one hundred and fifty words, avoid first person "
    "pronouns and list three keywords at the end separated by semicolons. Passage: {slot}",
    "Translate the text below from English into {subject}. Return only a JSON object with the "
    "fields source, translation and confidence, where confidence is a number between zero and "
    "one, and include nothing else in your reply. Text to translate: {slot}",
    "Think carefully and reason about the question before answering. First write out your full "
    "chain of thought inside thinking tags, considering at least two alternative approaches, then "
    "give the concise final answer inside answer tags. Question: {slot}",
    "Classify the sentiment of the following customer review as positive, negative or neutral. "
    "Give a one sentence justification that quotes the review, then rate your certainty on a "
    "scale from one to ten and suggest a reply the company could send. Review: {slot}",
    "Generate a complete Python function that {slot}. Include type hints, a docstring with "
    "usage examples, defensive input validation and unit tests written with pytest, then explain "
    "the time and space complexity of your solution in one short paragraph after the code.",
)
SUBJECTS = ("mathematics", "physics", "chemistry", "French", "German", "Japanese", "biology")


@dataclass
class FirmData:
    name: str
    indicators: dict[str, list[str]] = field(default_factory=dict)
    """Raw values per kind, as the firm's pipeline spells them (bad rows included)."""
    prompts: list[str] = field(default_factory=list)
    prompt_campaign: list[int] = field(default_factory=list)
    """Campaign index of each prompt, or -1 for organic traffic."""


@dataclass
class SyntheticForum:
    firms: list[FirmData]
    account_holders: dict[int, frozenset[int]]
    """Account number → the firms that hold it."""
    campaign_firms: dict[int, frozenset[int]]
    """Campaign index → the firms whose traffic contains it."""
    bad_rows_per_firm: int
    reword_rate: float
    """Share of a template's words each firm but the first edits (:func:`reword_template`)."""
    campaign_wordings: dict[int, dict[int, str]]
    """Campaign index → firm → the template as that firm's prompts word it (``{subject}``
    filled in, ``{slot}`` left as is)."""


DEFAULT_REWORD_RATE = 0.2
"""Rewording rate of :func:`generate_forum` (a fifth of a template's words edited per firm)."""
SLOT = "{slot}"


def _is_placeholder(word: str) -> bool:
    return "{" in word


def reword_template(template: str, rate: float, rng: random.Random) -> str:
    """``template`` with ``round(rate · n)`` edits to its ``n`` words (placeholders not counted),
    at distinct positions: substitutions (40 %), insertions (20 %), deletions (20 %) and swaps
    with the next word (20 %), drawing new words from :data:`WORDS`. Placeholders (``{slot}``,
    ``{subject}``, with any punctuation attached) are never substituted, deleted or moved; a swap
    with one becomes a substitution."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"the rewording rate is between 0 and 1, got {rate}")
    out = template.split()
    editable = [index for index, word in enumerate(out) if not _is_placeholder(word)]
    positions = sorted(rng.sample(editable, round(rate * len(editable))), reverse=True)
    for position in positions:  # right to left: earlier positions stay valid
        draw = rng.random()
        swap = position + 1 < len(out) and not _is_placeholder(out[position + 1])
        if draw < 0.4 or (draw >= 0.8 and not swap):
            out[position] = rng.choice(WORDS)
        elif draw < 0.6:
            out.insert(position, rng.choice(WORDS))
        elif draw < 0.8:
            del out[position]
        else:
            out[position], out[position + 1] = out[position + 1], out[position]
    return " ".join(out)


def wording_similarity(first: str, second: str) -> float:
    """Jaccard similarity of two wordings' sets of canonical words (``{slot}`` left out): 1.0 for
    the same words, whatever their order."""
    words_first, words_second = (
        set(canonical_words(wording.replace(SLOT, " "))) for wording in (first, second)
    )
    union = words_first | words_second
    return len(words_first & words_second) / len(union) if union else 1.0


def _sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(low, high)))


# Numbers Ofcom reserves for drama (never assigned): 1,000 each, so the demo dials no one.
_DRAMA_RANGES = (
    "+44207946",
    "+441134960",
    "+441144960",
    "+441154960",
    "+441164960",
    "+441174960",
    "+441184960",
    "+441214960",
    "+441314960",
    "+441414960",
    "+441514960",
    "+441614960",
    "+441914980",
    "+442896496",
    "+442920180",
    "+447700900",
)


def account_email(account: int) -> str:
    """A unique address under the reserved example.com domain."""
    return f"user{account:06d}.{WORDS[account % len(WORDS)]}@mail{account % 97}.example.com"


SYNTHETIC_ACCOUNTS = 1000 * len(_DRAMA_RANGES)
"""Accounts with distinct synthetic phone numbers (reserved drama ranges)."""


def account_phone(account: int) -> str:
    """A unique E.164 number from the reserved drama ranges (16,000 accounts at most)."""
    if account >= SYNTHETIC_ACCOUNTS:
        raise ValueError(f"synthetic phone numbers run out after {SYNTHETIC_ACCOUNTS:,} accounts")
    prefix = _DRAMA_RANGES[account // 1000]
    line = account % 1000
    return f"{prefix}{line:0{13 - len(prefix)}d}"


def account_ip(account: int) -> str:
    """A unique address in the documentation (2001:db8::/32) or benchmarking (198.18/15) range."""
    if account % 3 == 0:
        return f"2001:db8:{account >> 16:x}:{account & 0xFFFF:x}::1"
    return f"198.{18 + (account >> 16) % 2}.{(account >> 8) & 0xFF}.{account & 0xFF}"


def _spell_email(value: str, rng: random.Random) -> str:
    local, domain = value.split("@")
    style = rng.randrange(3)
    if style == 0:
        return value
    if style == 1:
        return f"  {local.capitalize()}@{domain.upper()} "
    return f"{local}@{domain.title()}"


def _spell_phone(value: str, rng: random.Random) -> str:
    national = value[3:]
    style = rng.randrange(3)
    if style == 0:
        return value
    if style == 1:
        return f"+44 {national[:4]} {national[4:]}"
    return f"+44 ({national[:3]}) {national[3:6]}-{national[6:]}"


def _spell_ip(value: str, rng: random.Random) -> str:
    if ":" in value and rng.random() < 0.5:
        return value.upper().replace("::1", ":0:0:0:1")
    return value


FIRM_NAMES = (
    "alpha-labs",
    "beta-ai",
    "gamma-research",
    "delta-ml",
    "epsilon-systems",
    "zeta-intelligence",
    "eta-robotics",
    "theta-compute",
    "iota-cloud",
    "kappa-vision",
    "lambda-works",
    "mu-analytics",
    "nu-models",
    "xi-dynamics",
    "omicron-ai",
    "pi-research",
    "rho-labs",
    "sigma-minds",
    "tau-systems",
    "upsilon-ml",
    "phi-compute",
    "chi-cloud",
    "psi-learning",
    "omega-foundry",
)
"""Names of synthetic firms, in the order a forum of N firms takes them."""


def firm_names(count: int) -> tuple[str, ...]:
    """The first ``count`` synthetic firm names."""
    if not 2 <= count <= len(FIRM_NAMES):
        raise ValueError(f"a synthetic forum has 2 to {len(FIRM_NAMES)} firms, got {count}")
    return FIRM_NAMES[:count]


def generate_forum(
    seed: int = 7,
    *,
    firm_names: tuple[str, ...] = FIRM_NAMES[:3],
    accounts_per_firm: int = 3000,
    shared_fraction: float = 0.12,
    prompts_per_campaign: tuple[int, int] = (40, 120),
    organic_prompts: int = 300,
    bad_rows_per_firm: int = 5,
    reword_rate: float = DEFAULT_REWORD_RATE,
) -> SyntheticForum:
    """A forum of firms with planned account overlaps and prompt campaigns, every firm but the
    first wording each campaign template its own way at ``reword_rate`` (module docstring)."""
    if not 0.0 <= reword_rate <= 1.0:
        raise ValueError(f"reword_rate is between 0 and 1, got {reword_rate}")
    rng = random.Random(seed)  # noqa: S311 (reproducible test data, not a secret)
    firms = [FirmData(name=name) for name in firm_names]
    holders = _plan_accounts(rng, len(firms), accounts_per_firm, shared_fraction)
    _write_indicators(rng, firms, holders, bad_rows_per_firm)
    wordings = _campaign_wordings(seed, len(firms), reword_rate)
    campaign_firms = _write_prompts(rng, firms, wordings, prompts_per_campaign, organic_prompts)
    return SyntheticForum(
        firms=firms,
        account_holders=holders,
        campaign_firms=campaign_firms,
        bad_rows_per_firm=bad_rows_per_firm,
        reword_rate=reword_rate,
        campaign_wordings={
            campaign: {firm: wordings[firm][campaign] for firm in owners}
            for campaign, owners in campaign_firms.items()
        },
    )


def campaign_template(campaign: int) -> str:
    """Campaign ``campaign``'s template as written, its subject filled in (``{slot}`` left)."""
    return CAMPAIGN_TEMPLATES[campaign].replace("{subject}", _subject(campaign))


def _subject(campaign: int) -> str:
    return SUBJECTS[campaign % len(SUBJECTS)]


def _campaign_wordings(seed: int, firm_count: int, rate: float) -> list[list[str]]:
    """Firm → campaign → the template as the firm sees it (:func:`campaign_template`).

    Each (firm, template) pair edits with its own generator, seeded by the forum's seed and the
    pair, so that the rest of the forum is the same at every rate (rate 0: the templates as
    written)."""
    out = []
    for firm in range(firm_count):
        wordings = []
        for campaign, template in enumerate(CAMPAIGN_TEMPLATES):
            wording = template
            if firm > 0:
                edits = random.Random(f"{seed}/reword/{firm}/{campaign}")  # noqa: S311
                wording = reword_template(template, rate, edits)
            wordings.append(wording.replace("{subject}", _subject(campaign)))
        out.append(wordings)
    return out


_ALL_SUBSETS_UP_TO = 4


def _plan_accounts(
    rng: random.Random, firm_count: int, accounts_per_firm: int, shared_fraction: float
) -> dict[int, frozenset[int]]:
    """Every subset of two or more firms shares its own block of accounts; the rest are unique.

    With more than :data:`_ALL_SUBSETS_UP_TO` firms, subsets are too many to cover: shared
    accounts then go to random groups of 2 to 4 firms (pairs most often), about
    ``accounts_per_firm · shared_fraction`` per firm.
    """
    holders: dict[int, frozenset[int]] = {}
    if firm_count > _ALL_SUBSETS_UP_TO:
        sizes = [size for size in (2, 2, 2, 3, 3, 4) if size <= firm_count]
        mean_size = sum(sizes) / len(sizes)
        shared = round(accounts_per_firm * shared_fraction * firm_count / mean_size)
        for _ in range(shared):
            holders[len(holders)] = frozenset(rng.sample(range(firm_count), rng.choice(sizes)))
        for firm in range(firm_count):
            held = sum(1 for owners in holders.values() if firm in owners)
            for _ in range(max(0, accounts_per_firm - held)):
                holders[len(holders)] = frozenset({firm})
        return holders
    shared_block = max(1, int(accounts_per_firm * shared_fraction / firm_count))
    for size in range(2, firm_count + 1):
        for subset in combinations(range(firm_count), size):
            for _ in range(rng.randint(shared_block // 2, shared_block)):
                holders[len(holders)] = frozenset(subset)
    for firm in range(firm_count):
        held = sum(1 for owners in holders.values() if firm in owners)
        for _ in range(max(0, accounts_per_firm - held)):
            holders[len(holders)] = frozenset({firm})
    return holders


def _write_indicators(
    rng: random.Random,
    firms: list[FirmData],
    holders: dict[int, frozenset[int]],
    bad_rows_per_firm: int,
) -> None:
    for account, owners in holders.items():
        for firm in owners:
            data = firms[firm].indicators
            data.setdefault("email", []).append(_spell_email(account_email(account), rng))
            data.setdefault("phone", []).append(_spell_phone(account_phone(account), rng))
            data.setdefault("ip", []).append(_spell_ip(account_ip(account), rng))
    bad_values = {"email": "not-an-email", "phone": "call me maybe", "ip": "999.1.1.1"}
    for firm_data in firms:
        for kind, values in firm_data.indicators.items():
            values.extend([bad_values[kind]] * bad_rows_per_firm)
            rng.shuffle(values)


def _write_prompts(
    rng: random.Random,
    firms: list[FirmData],
    wordings: list[list[str]],
    prompts_per_campaign: tuple[int, int],
    organic_prompts: int,
) -> dict[int, frozenset[int]]:
    """Campaigns seen by all firms, by each pair, and by single firms, plus organic traffic."""
    firm_count = len(firms)
    plan: list[frozenset[int]] = [frozenset(range(firm_count))]
    plan += [frozenset(pair) for pair in combinations(range(firm_count), 2)]
    plan += [frozenset({firm}) for firm in range(firm_count)]
    campaign_firms = {index: plan[index % len(plan)] for index in range(len(CAMPAIGN_TEMPLATES))}
    for campaign, owners in campaign_firms.items():
        for firm in owners:
            wording = wordings[firm][campaign]
            for _ in range(rng.randint(*prompts_per_campaign)):
                prompt = wording.replace(SLOT, _sentence(rng, 8, 14))
                firms[firm].prompts.append(prompt)
                firms[firm].prompt_campaign.append(campaign)
    for firm_data in firms:
        for _ in range(organic_prompts):
            firm_data.prompts.append(_sentence(rng, 12, 40) + "?")
            firm_data.prompt_campaign.append(-1)
        order = list(range(len(firm_data.prompts)))
        rng.shuffle(order)
        firm_data.prompts = [firm_data.prompts[i] for i in order]
        firm_data.prompt_campaign = [firm_data.prompt_campaign[i] for i in order]
    return campaign_firms
