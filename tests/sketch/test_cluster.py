"""Local clustering of a member's prompts into templates, and the template core."""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from sigshare.sketch.cluster import Clustering, _template_core, cluster_prompts
from sigshare.sketch.errors import ParameterError
from sigshare.sketch.lsh import Banding, optimal_banding
from sigshare.sketch.minhash import MinHashParams, SaltedMinHasher, estimate_jaccard

KEY = bytes(range(32))
P = 128
TEMPLATES = 8
PER_TEMPLATE = 30
ORGANIC = 100
EMPTY_TEXTS = ["", "!!!", " ... "]


@pytest.fixture(scope="module")
def hasher() -> SaltedMinHasher:
    return SaltedMinHasher(MinHashParams("test-1"), KEY)


def unique_words(rng: random.Random, count: int) -> list[str]:
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 9))))
    return sorted(words)


@dataclass
class Template:
    """Fixed segments of words with a slot after each segment but the last; a slot is either
    free words (filled per prompt) or a number (always the one word ``_num_``)."""

    segments: list[list[str]]
    slots: list[str]  # "words" or "num"

    def fill(self, fillers: list[list[str]]) -> str:
        parts = []
        for index, segment in enumerate(self.segments):
            parts += segment
            if index < len(self.slots):
                parts += fillers[index]
        return " ".join(parts)

    def fixed_runs(self) -> list[str]:
        """The maximal runs of words shared by every prompt (number slots render as '7')."""
        runs, current = [], list(self.segments[0])
        for slot, segment in zip(self.slots, self.segments[1:], strict=True):
            if slot == "num":
                current += ["7", *segment]
            else:
                runs.append(" ".join(current))
                current = list(segment)
        runs.append(" ".join(current))
        return runs


@dataclass
class Member:
    texts: list[str]
    template_of: npt.NDArray[np.int64]  # template index per text, −1 organic, −2 empty
    templates: list[Template]


def make_templates(seed: int) -> list[Template]:
    rng = random.Random(seed)
    vocab = iter(unique_words(rng, 2000))
    templates = []
    for index in range(TEMPLATES):
        segments = [[next(vocab) for _ in range(rng.randint(12, 16))] for _ in range(3)]
        slots = ["num", "words"] if index % 2 == 0 else ["words", "words"]
        templates.append(Template(segments, slots))
    return templates


def make_member(templates: list[Template], seed: int) -> Member:
    """``TEMPLATES × PER_TEMPLATE`` template prompts with fresh fillers, organic prompts and a
    few texts without words, shuffled. Filler words are never reused within a member."""
    rng = random.Random(seed)
    # Letters only, and disjoint from template words (those have at most 9 letters).
    fresh = iter(word + "q" * 10 for word in unique_words(rng, 4000))
    texts: list[str] = []
    owners: list[int] = []
    for index, template in enumerate(templates):
        for _ in range(PER_TEMPLATE):
            fillers = [
                [str(rng.randint(0, 10**6))]
                if slot == "num"
                else [next(fresh) for _ in range(rng.randint(1, 3))]
                for slot in template.slots
            ]
            texts.append(template.fill(fillers))
            owners.append(index)
    for _ in range(ORGANIC):
        texts.append(" ".join(next(fresh) for _ in range(rng.randint(15, 40))))
        owners.append(-1)
    texts += EMPTY_TEXTS
    owners += [-2] * len(EMPTY_TEXTS)
    order = list(range(len(texts)))
    rng.shuffle(order)
    return Member(
        texts=[texts[i] for i in order],
        template_of=np.array([owners[i] for i in order], dtype=np.int64),
        templates=templates,
    )


@pytest.fixture(scope="module")
def member() -> Member:
    return make_member(make_templates(1), seed=2)


@pytest.fixture(scope="module")
def clustering(hasher: SaltedMinHasher, member: Member) -> Clustering:
    return cluster_prompts(hasher, member.texts, threshold=0.5)


def distinct_shingles(hasher: SaltedMinHasher, texts: list[str]) -> list[set[int]]:
    flat, offsets = hasher.shingles(texts)
    return [set(flat[offsets[d] : offsets[d + 1]].tolist()) for d in range(len(texts))]


def template_clusters(clustering: Clustering, member: Member) -> dict[int, int]:
    """Template index → position of the cluster holding most of its prompts."""
    out = {}
    for template in range(TEMPLATES):
        counts = [
            int(np.count_nonzero(member.template_of[c.prompts] == template))
            for c in clustering.clusters
        ]
        out[template] = int(np.argmax(counts))
    return out


# -- the synthetic member ----------------------------------------------------------------------


def test_clusters_partition_the_prompts(clustering: Clustering, member: Member) -> None:
    all_prompts = np.concatenate([c.prompts for c in clustering.clusters])
    live = np.flatnonzero(member.template_of != -2)
    np.testing.assert_array_equal(np.sort(all_prompts), live)  # each live prompt exactly once
    assert clustering.empty_prompts == len(EMPTY_TEXTS)
    volumes = [c.volume for c in clustering.clusters]
    assert volumes == sorted(volumes, reverse=True)
    for cluster in clustering.clusters:
        assert cluster.prompts.dtype == np.int64
        assert np.all(np.diff(cluster.prompts) > 0)  # ascending
        assert cluster.volume == len(cluster.prompts)
    assert clustering.banding == optimal_banding(0.5, P)


def test_templates_are_recovered(clustering: Clustering, member: Member) -> None:
    majority = template_clusters(clustering, member)
    assert len(set(majority.values())) == TEMPLATES  # one cluster per template
    for template, position in majority.items():
        cluster = clustering.clusters[position]
        owners = member.template_of[cluster.prompts]
        recall = np.count_nonzero(owners == template) / PER_TEMPLATE
        purity = np.count_nonzero(owners == template) / cluster.volume
        # Observed: recall 1.0 and purity 1.0 for every template (prompts of one template have
        # exact Jaccard ≥ ~0.6; Ĵ has sd ≤ 0.044 at P = 128, so a miss would be a > 2σ event
        # per pair, and the cluster is connected through 30 prompts). Required: recall ≥ 0.95.
        assert recall >= 0.95, (template, recall)
        assert purity == 1.0, (template, purity)  # no organic prompt or other template joins
    # Organic prompts share no shingle with anything: each is alone.
    for cluster in clustering.clusters:
        if np.any(member.template_of[cluster.prompts] == -1):
            assert cluster.volume == 1


def test_core_is_the_strict_majority_of_shingles(
    hasher: SaltedMinHasher, clustering: Clustering, member: Member
) -> None:
    sets = distinct_shingles(hasher, member.texts)
    for cluster in clustering.clusters:
        core = cluster.core
        assert core.dtype == np.uint32
        assert np.all(np.diff(core.astype(np.int64)) > 0)  # sorted, no repeats
        np.testing.assert_array_equal(cluster.signature, hasher.signature_of_set(core))
        members = [sets[int(i)] for i in cluster.prompts]
        if cluster.volume == 1:
            assert set(core.tolist()) == members[0]  # a singleton is its own core
            continue
        counts: dict[int, int] = {}
        for shingles in members:
            for value in shingles:
                counts[value] = counts.get(value, 0) + 1
        majority = {value for value, count in counts.items() if 2 * count > cluster.volume}
        # Exact statement: every core shingle is in > half of the prompts and every shingle in
        # > half is in the core; only if no shingle qualifies is the core one prompt's set.
        if majority:
            assert set(core.tolist()) == majority
        else:
            assert set(core.tolist()) in members


def test_template_core_is_the_template_without_its_fillers(
    hasher: SaltedMinHasher, clustering: Clustering, member: Member
) -> None:
    """Fillers are unique per prompt, so a shingle touching one is in a single prompt; the
    core is exactly the shingles of the fixed runs (a number slot is the fixed word _num_)."""
    majority = template_clusters(clustering, member)
    for template, position in majority.items():
        expected = set().union(*distinct_shingles(hasher, member.templates[template].fixed_runs()))
        assert set(clustering.clusters[position].core.tolist()) == expected


def test_cluster_ids_are_random_hex(
    hasher: SaltedMinHasher, clustering: Clustering, member: Member
) -> None:
    ids = [c.cluster_id for c in clustering.clusters]
    assert all(re.fullmatch(r"[0-9a-f]{32}", cluster_id) for cluster_id in ids)
    assert len(set(ids)) == len(ids)
    again = cluster_prompts(hasher, member.texts, threshold=0.5)
    # Same data, same partition and cores, but fresh ids: never derived from content.
    assert [c.prompts.tolist() for c in again.clusters] == [
        c.prompts.tolist() for c in clustering.clusters
    ]
    for first, second in zip(clustering.clusters, again.clusters, strict=True):
        np.testing.assert_array_equal(first.core, second.core)
    assert not set(ids) & {c.cluster_id for c in again.clusters}


def test_min_volume_filters(
    hasher: SaltedMinHasher, clustering: Clustering, member: Member
) -> None:
    filtered = cluster_prompts(hasher, member.texts, threshold=0.5, min_volume=2)
    expected = [c for c in clustering.clusters if c.volume >= 2]
    assert len(expected) == TEMPLATES
    assert [c.prompts.tolist() for c in filtered.clusters] == [c.prompts.tolist() for c in expected]
    for got, want in zip(filtered.clusters, expected, strict=True):
        np.testing.assert_array_equal(got.signature, want.signature)
    assert filtered.empty_prompts == clustering.empty_prompts
    assert cluster_prompts(hasher, member.texts, min_volume=PER_TEMPLATE + 1).clusters == []
    assert len(cluster_prompts(hasher, member.texts, min_volume=PER_TEMPLATE).clusters) == 8


def test_two_members_share_template_cores_not_prompt_unions(hasher: SaltedMinHasher) -> None:
    """The design rationale in numbers: cores match across firms, unions of prompts do not."""
    templates = make_templates(1)
    first, second = make_member(templates, seed=2), make_member(templates, seed=3)
    results = []
    for member in (first, second):
        clustering = cluster_prompts(hasher, member.texts, threshold=0.5, min_volume=2)
        sets = distinct_shingles(hasher, member.texts)
        by_template = {}
        for template, position in template_clusters(clustering, member).items():
            cluster = clustering.clusters[position]
            union = set().union(*(sets[int(i)] for i in cluster.prompts))
            by_template[template] = (cluster, union)
        results.append(by_template)
    for template in range(TEMPLATES):
        (core_a, union_a), (core_b, union_b) = results[0][template], results[1][template]
        # Cores: the same set in both firms (fillers differ), so Ĵ = 1 ≥ 0.9.
        assert set(core_a.core.tolist()) == set(core_b.core.tolist())
        assert estimate_jaccard(core_a.signature, core_b.signature) >= 0.9
        # Unions: ~40 shared template shingles against ~240 filler shingles per firm, exact
        # J ≈ 0.1. The estimate stays within 4.5σ (σ = √(J(1−J)/P) ≈ 0.027) of it.
        exact = len(union_a & union_b) / len(union_a | union_b)
        union_estimate = estimate_jaccard(
            hasher.signature_of_set(np.array(sorted(union_a), dtype=np.uint32)),
            hasher.signature_of_set(np.array(sorted(union_b), dtype=np.uint32)),
        )
        assert exact <= 0.2, exact
        assert abs(union_estimate - exact) <= 4.5 * np.sqrt(exact * (1 - exact) / P)
        assert union_estimate <= 0.35


# -- smaller cases -----------------------------------------------------------------------------


def test_identical_copies_form_one_cluster(hasher: SaltedMinHasher) -> None:
    text = "please summarise the attached quarterly report for the board meeting"
    texts = [text] * 200 + ["an entirely different request about holiday plans in spain"]
    clustering = cluster_prompts(hasher, texts)
    assert [c.volume for c in clustering.clusters] == [200, 1]
    assert clustering.clusters[0].prompts.tolist() == list(range(200))
    assert set(clustering.clusters[0].core.tolist()) == distinct_shingles(hasher, [text])[0]
    np.testing.assert_array_equal(clustering.clusters[0].signature, hasher.signatures([text])[0])


def test_no_texts_and_only_empty_texts(hasher: SaltedMinHasher) -> None:
    assert cluster_prompts(hasher, []).clusters == []
    clustering = cluster_prompts(hasher, ["", "?!", ""])
    assert clustering.clusters == []
    assert clustering.empty_prompts == 3


def test_bucket_neighbours_below_the_threshold_stay_apart(hasher: SaltedMinHasher) -> None:
    rng = random.Random(5)
    words = unique_words(rng, 200)
    base = words[:40]
    far = base[:15] + words[40:65]  # shares 13 of 63 distinct 3-shingles: J ≈ 0.21
    near = base[:36] + words[65:69]  # shares 34 of 42: J ≈ 0.81
    texts = [" ".join(base), " ".join(far), " ".join(near)]
    sets = distinct_shingles(hasher, texts)
    assert len(sets[0] & sets[1]) / len(sets[0] | sets[1]) < 0.25
    # One row per band: any equal minimum makes a candidate, so all three pairs are bucket
    # neighbours (a pair with J ≈ 0.2 misses all 128 minima with odds 0.8¹²⁸ ≈ 10⁻¹²). Only
    # the estimate decides: Ĵ(far) has mean 0.21 and sd 0.036, so Ĵ ≥ 0.5 is an 8σ event.
    clustering = cluster_prompts(hasher, texts, threshold=0.5, banding=Banding(128, 1))
    assert sorted(c.prompts.tolist() for c in clustering.clusters) == [[0, 2], [1]]


def test_explicit_banding_is_used(hasher: SaltedMinHasher, member: Member) -> None:
    banding = Banding(32, 4)
    clustering = cluster_prompts(hasher, member.texts[:60], banding=banding)
    assert clustering.banding == banding


@pytest.mark.parametrize(
    ("threshold", "min_volume"), [(0.0, 1), (1.0, 1), (1.5, 1), (0.5, 0), (0.5, -3)]
)
def test_parameter_validation(hasher: SaltedMinHasher, threshold: float, min_volume: int) -> None:
    with pytest.raises(ParameterError):
        cluster_prompts(hasher, ["a b c"], threshold=threshold, min_volume=min_volume)


def test_core_falls_back_to_the_medoid(hasher: SaltedMinHasher) -> None:
    # A chain {1,2},{2,3},{3,4},{4,5},{5,6}: every value is in at most 2 of 5 sets, no majority.
    sets = [np.array([k, k + 1], dtype=np.uint32) for k in range(1, 6)]
    offsets = np.array([0, 2, 4, 6, 8, 10], dtype=np.int64)
    flat = np.concatenate(sets)
    signatures = hasher.signatures_from_shingles(flat, offsets)
    group = np.arange(5, dtype=np.int64)
    core = _template_core(flat, offsets, signatures, group)
    # The medoid maximises the summed estimated similarity to the group (first on ties).
    totals = [
        sum(estimate_jaccard(signatures[i], signatures[j]) for j in range(5)) for i in range(5)
    ]
    np.testing.assert_array_equal(core, sets[int(np.argmax(totals))])
    # With a majority present, the core is the majority: {7} is in 3 of 5 sets.
    sets = [
        np.array([7, k], dtype=np.uint32) if k < 3 else np.array([k], np.uint32) for k in range(5)
    ]
    offsets = np.zeros(6, dtype=np.int64)
    np.cumsum([len(s) for s in sets], out=offsets[1:])
    flat = np.concatenate(sets)
    signatures = hasher.signatures_from_shingles(flat, offsets)
    assert _template_core(flat, offsets, signatures, group).tolist() == [7]
    # Exactly half is not a strict majority: in 4 sets, 7 is in 3 (kept) and 9 in 2 (dropped).
    sets = [np.array(values, dtype=np.uint32) for values in ([7, 9], [7, 9], [7, 1], [2])]
    offsets = np.array([0, 2, 4, 6, 7], dtype=np.int64)
    flat = np.concatenate(sets)
    signatures = hasher.signatures_from_shingles(flat, offsets)
    core = _template_core(flat, offsets, signatures, np.arange(4, dtype=np.int64))
    assert core.tolist() == [7]
