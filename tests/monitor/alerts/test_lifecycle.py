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
