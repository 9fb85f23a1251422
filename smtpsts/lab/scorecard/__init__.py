"""
The MTA conformance scorecard: the lab as the attacker's network, real MTAs under test.

:mod:`~smtpsts.lab.scorecard.world` serves DNS, policy hosts and receiving
MX hosts on their real ports inside a private network namespace and holds
the attacker's tools; :mod:`~smtpsts.lab.scorecard.scenarios` lists what the
attacker does and what RFC 8461/7672 require;
:mod:`~smtpsts.lab.scorecard.columns` drives each MTA;
:mod:`~smtpsts.lab.scorecard.runner` creates the namespace and prints the table.
"""
