from minidpo import world

P = "Review: The Silent Harbor"


def test_gold_reward_values_and_sentiment_order():
    pos = "The acting was brilliant. I loved this film."
    neg = "The acting was terrible. I hated this film."
    assert world.gold_reward(P, pos) > 0 > world.gold_reward(P, neg)
    assert abs(world.gold_reward(P, neg) + 2.0) < 1e-9
    assert abs(world.gold_reward(P, pos) - 2.0) < 1e-9
    assert abs(world.gold_reward(P, "The music felt very good.") - 0.9) < 1e-9


def test_degenerate_text_scores_lower_than_fluent_positive():
    fluent = "The acting was brilliant."
    repeated_word = "The acting was brilliant brilliant brilliant."
    repeated_sentence = "The acting was brilliant. The acting was brilliant. The acting was brilliant."
    reused = "The acting was brilliant. The music was brilliant."
    for bad in (repeated_word, repeated_sentence, reused, "brilliant brilliant", "", "The acting was"):
        assert world.gold_reward(P, bad) < world.gold_reward(P, fluent), bad
        assert world.is_fluent(P, bad) == (bad == reused)  # reusing a word is grammatical, not rewarded
    assert world.is_fluent(P, fluent)
    assert world.gold_reward(P, reused) == 0.5


def test_title_must_match_prompt():
    assert world.is_fluent(P, "The Silent Harbor was a great film.")
    assert not world.is_fluent(P, "The Golden Harbor was a great film.")
    assert world.gold_reward(P, "The Golden Harbor was a great film.") == -1.0


def test_corpus_is_fluent_and_spread_over_reward():
    corpus = world.make_corpus(3000, seed=1)
    assert all(world.is_fluent(p, r) for p, r in corpus)
    g = [world.gold_reward(p, r) for p, r in corpus]
    mean = sum(g) / len(g)
    std = (sum((x - mean) ** 2 for x in g) / len(g)) ** 0.5
    assert abs(mean) < 0.2 and std > 0.8           # mixed sentiment: SFT will be far from optimal
    assert max(g) < 4.2 + 1e-9


def test_titles_split_is_disjoint_and_fixed():
    train, held = world.split_titles()
    assert len(held) == world.N_HELDOUT_TITLES and not set(train) & set(held)
    assert world.split_titles() == (train, held)
