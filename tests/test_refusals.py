"""piw_services/refusals.py: a refusal logged once a minute per sender, the rest counted and
summed up, and a block when the count reaches the limit."""

from piw_services.refusals import Refusals, Summary, Verdict


def test_the_first_refusal_of_a_minute_is_logged_and_the_rest_summed_up():
    r = Refusals(limit=5, window=60)
    assert r.refuse("pi1", "a", 0) == (Verdict(log=True, block=False), None)
    assert r.refuse("pi2", "b", 1) == (Verdict(log=True, block=False), None)
    for t in range(2, 5):
        assert r.refuse("pi1", f"a{t}", t) == (Verdict(log=False, block=False), None)
    assert r.refuse("pi1", "a5", 5) == (Verdict(log=False, block=True), None)  # the 5th
    assert r.refuse("pi1", "a6", 6) == (Verdict(log=False, block=False), None)  # once only
    assert r.flush(59) == []
    # pi1's next refusal after the minute starts a new one and brings the summary
    verdict, summary = r.refuse("pi1", "c", 61)
    assert verdict == Verdict(log=True, block=False)
    assert summary == Summary("pi1", 5, "a6")
    # pi2 sent one: nothing to sum up; pi1's new minute is summed up by a flush later
    assert r.flush(62) == []
    r.refuse("pi1", "d", 70)
    assert r.flush(121) == [Summary("pi1", 1, "d")]
    assert r.flush(200) == []
