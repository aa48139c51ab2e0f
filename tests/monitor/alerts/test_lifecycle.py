"""The alert rule: open after two consecutive firing windows (or at once when immediate),
resolve after three quiet ones."""

from __future__ import annotations

from monitor.alerts.lifecycle import AlertPolicy, Streak, step


def test_alert_rule_opens_after_two_and_resolves_after_three_quiet():
    policy, s, actions = AlertPolicy(), Streak(), []
    active = False
    for fire in (True, False, True, True, True, False, False, False):
        s, action = step(s, firing=fire, immediate=False, active=active, policy=policy)
        actions.append(action)
        active = (active or action == "open") and action != "resolve"
    assert actions == [None, None, None, "open", None, None, None, "resolve"]
    _, action = step(Streak(), firing=True, immediate=True, active=False, policy=policy)
    assert action == "open"


def test_quiet_windows_before_the_onset_never_resolve_an_active_alert():
    """A rebuilt reference judges older windows again: the quiet ones that end before the
    alert's onset do not count, and do not carry a quiet run into the windows after it."""
    policy, s = AlertPolicy(), Streak(firing_run=4)
    for _ in range(5):
        s, action = step(s, firing=False, immediate=False, active=True, policy=policy,
                         before_onset=True)  # fmt: skip
        assert action is None and s == Streak()
    s, action = step(s, firing=True, immediate=False, active=True, policy=policy)
    assert action is None and s == Streak(1, 0)  # still firing: the same alert, no new one
    actions = []
    for _ in range(3):  # quiet windows after the onset resolve it as before
        s, action = step(s, firing=False, immediate=False, active=True, policy=policy)
        actions.append(action)
    assert actions == [None, None, "resolve"]
    # Without an active alert there is no onset to respect: the rule is unchanged.
    s, action = step(Streak(0, 2), firing=False, immediate=False, active=False, policy=policy,
                     before_onset=True)  # fmt: skip
    assert (s, action) == (Streak(0, 3), None)
