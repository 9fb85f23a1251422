"""
The scorecard's scenarios, as data: what the attacker does and what RFC 8461/7672 require.

Each scenario owns one recipient domain ``<name>.test`` (so columns and
scenarios never share cached state), publishes its records in
:meth:`Scenario.setup`, optionally delivers a first message so the MTA
learns the policy (``prime``), then lets the attacker act (``strike``) and
delivers the judged message. ``required`` lists the outcomes the RFC
allows: ``tls:HOST`` (delivered over TLS to HOST), ``plain:HOST``,
``deliver`` (anywhere, TLS or not: plaintext allowed), ``defer`` (queued,
not delivered) or ``bounce`` (refused for good).

DANE scenarios use the world's DNS server as the validating resolver: it
sets the AD bit for their zones (``dns.secure``) and answers SERVFAIL where
a validating resolver finds a bogus answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import attrs

from smtpsts.lab.scorecard.world import World

__all__ = ["SCENARIOS", "Scenario", "policy_text"]


def policy_text(mode: str, *mx: str, max_age: int = 86400) -> str:
    """
    An MTA-STS policy file.

    Args:
        mode: ``enforce``, ``testing`` or ``none``.
        mx: The ``mx`` patterns.
        max_age: Seconds.

    Returns:
        The policy, CRLF-terminated lines.
    """
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return "\r\n".join(lines) + "\r\n"


Step = Callable[[World, str], None]


def _nothing(_world: World, _domain: str) -> None:
    return None


@attrs.frozen
class Scenario:
    """
    One scenario.

    Attributes:
        name: Its name; the recipient domain is ``<name>.test``.
        attack: What the attacker does, in words.
        required: The outcomes the RFC allows (see the module docstring).
        rule: The RFC section and what it says.
        setup: Publishes the domain's records and MX hosts.
        strike: The attacker's move, after the priming message if any.
        prime: Deliver one message first (the MTA learns and caches the policy).
        wait: Seconds to wait after priming, before the strike (``max_age`` expiry).
        dane: Needs a DANE-capable column.
    """

    name: str
    attack: str
    required: tuple[str, ...]
    rule: str
    setup: Step
    strike: Step = _nothing
    prime: bool = False
    wait: float = 0.0
    dane: bool = False

    @property
    def domain(self) -> str:
        """The recipient domain (A-label)."""
        return "xn--bcher-kva.test" if self.name == "idn-domain" else f"{self.name}.test"

    def judge(self, observed: str) -> bool:
        """
        Whether ``observed`` is one of the required outcomes.

        Args:
            observed: ``tls:HOST``, ``plain:HOST``, ``defer`` or ``bounce``.

        Returns:
            Pass or fail.
        """
        kind = observed.split(":", 1)[0]
        for allowed in self.required:
            if allowed == observed or (allowed == "deliver" and kind in ("tls", "plain")):
                return True
        return False


# --------------------------------------------------------------------------- building blocks


def _sts(mode: str, label: str = "good", *, max_age: int = 86400, mx: str = "") -> Step:
    def setup(world: World, domain: str) -> None:
        host = f"mx.{domain}"
        world.sts(domain, policy_text(mode, mx or host, max_age=max_age))
        world.mx(host, label)
        world.swap_mx(domain, host)

    return setup


def _with_evil(base: Step, label: str = "good") -> Step:
    def setup(world: World, domain: str) -> None:
        base(world, domain)
        world.mx(f"evil.{domain}", label)

    return setup


def _to_evil(world: World, domain: str) -> None:
    world.swap_mx(domain, f"evil.{domain}")


def _then(*steps: Step) -> Step:
    def step(world: World, domain: str) -> None:
        for s in steps:
            s(world, domain)

    return step


def _strip(world: World, domain: str) -> None:
    world.strip_starttls(f"mx.{domain}")


def _block(how: str) -> Step:
    def step(world: World, domain: str) -> None:
        world.block_txt(domain, how)

    return step


def _down(world: World, domain: str) -> None:
    world.policy_host_down(domain)


def _new_id(world: World, domain: str) -> None:
    world.dns.set(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=2;"', ttl=1)


def _present(label: str) -> Step:
    def step(world: World, domain: str) -> None:
        world.present(f"mx.{domain}", label)

    return step


def _wildcard(host_prefix: str) -> Step:
    def setup(world: World, domain: str) -> None:
        host = f"{host_prefix}.{domain}"
        world.sts(domain, policy_text("enforce", f"*.{domain}"))
        world.mx(host)
        world.swap_mx(domain, host)

    return setup


def _policy_update(world: World, domain: str) -> None:
    world.mx(f"new.{domain}")
    world.sts(domain, policy_text("enforce", f"new.{domain}"), record_id="2")
    world.swap_mx(domain, f"new.{domain}")


def _withdraw(world: World, domain: str) -> None:
    world.sts(domain, policy_text("none", f"mx.{domain}"), record_id="2")
    world.swap_mx(domain, f"evil.{domain}")
    world.strip_starttls(f"evil.{domain}")


def _no_policy(world: World, domain: str) -> None:
    world.mx(f"mx.{domain}")
    world.swap_mx(domain, f"mx.{domain}")


def _null_mx(world: World, domain: str) -> None:
    world.dns.set(domain, "MX", "0 .")


def _second_mx(world: World, domain: str) -> None:
    world.sts(domain, policy_text("enforce", f"mx1.{domain}", f"mx2.{domain}"))
    world.mx(f"mx1.{domain}", "wrong")
    world.mx(f"mx2.{domain}")
    world.swap_mx(domain, f"mx1.{domain}", f"mx2.{domain}")


def _dane(label: str, record: str, *, sts: str = "", bogus: bool = False) -> Step:
    def setup(world: World, domain: str) -> None:
        host = f"mx.{domain}"
        world.dns.secure(domain)
        if sts:
            world.sts(domain, policy_text(sts, host))
        world.mx(host, label)
        world.swap_mx(domain, host)
        name = f"_25._tcp.{host}"
        if bogus:
            world.dns.servfail(name)
            return
        text = {
            "ee": lambda: world.tlsa_ee(host, label),
            "ee-other": lambda: world.tlsa_ee(host, "wrong"),
            "ta": lambda: world.tlsa_ta(world.private_ca),
            "ta-other": lambda: world.tlsa_ta(world.ca),
        }[record]()
        world.dns.set(name, "TLSA", text)

    return setup


S = Scenario

SCENARIOS: Final[tuple[Scenario, ...]] = (
    S(
        "valid-enforce",
        "none (baseline)",
        ("tls:mx",),
        "RFC 8461 §5: enforce, MX listed, valid certificate: deliver over TLS",
        _sts("enforce"),
    ),
    S(
        "no-policy",
        "none: the domain publishes no policy",
        ("deliver",),
        "RFC 8461 §5: no policy, opportunistic delivery",
        _no_policy,
    ),
    S(
        "testing-bad-cert",
        "the MX presents a certificate for another name",
        ("deliver",),
        "RFC 8461 §5: testing mode never stops delivery (report only)",
        _sts("testing", "wrong"),
    ),
    S(
        "attacker-mx",
        "MX points to the attacker's host (valid certificate for its own name), not in the policy",
        ("defer",),
        "RFC 8461 §4.1, §5: enforce, MX not matching the policy: do not deliver",
        _with_evil(_sts("enforce")),
        _to_evil,
    ),
    S(
        "attacker-mx-after-caching",
        "after caching: MX swapped to the attacker's host",
        ("defer",),
        "RFC 8461 §4.1, §5.1: the cached policy still applies",
        _with_evil(_sts("enforce")),
        _to_evil,
        prime=True,
    ),
    S(
        "wildcard-one-label",
        "none: policy mx *.<domain>, MX a.<domain>",
        ("tls:a",),
        "RFC 8461 §4.1: a wildcard matches one left-most label",
        _wildcard("a"),
    ),
    S(
        "wildcard-two-labels",
        "MX a.b.<domain> under the policy *.<domain>",
        ("defer",),
        "RFC 8461 §4.1: the wildcard does not match two labels",
        _wildcard("a.b"),
    ),
    S(
        "starttls-stripped-enforce",
        "STARTTLS removed from the EHLO reply",
        ("defer",),
        "RFC 8461 §5: enforce requires TLS",
        _sts("enforce"),
        _strip,
    ),
    S(
        "starttls-stripped-after-caching",
        "after caching: STARTTLS removed from the EHLO reply",
        ("defer",),
        "RFC 8461 §5, §5.1",
        _sts("enforce"),
        _strip,
        prime=True,
    ),
    S(
        "starttls-stripped-testing",
        "STARTTLS removed, testing mode",
        ("deliver",),
        "RFC 8461 §5: testing mode delivers (plaintext allowed)",
        _sts("testing"),
        _strip,
    ),
    S(
        "self-signed-enforce",
        "the MX presents a self-signed certificate",
        ("defer",),
        "RFC 8461 §4.2: the certificate must chain to a trusted root",
        _sts("enforce", "self"),
    ),
    S(
        "expired-enforce",
        "the MX presents an expired certificate",
        ("defer",),
        "RFC 8461 §4.2: the certificate must be valid",
        _sts("enforce", "expired"),
    ),
    S(
        "wrong-name-enforce",
        "the MX presents a valid certificate for another name",
        ("defer",),
        "RFC 8461 §4.2: the certificate must match the MX host name",
        _sts("enforce", "wrong"),
    ),
    S(
        "cert-swap-after-caching",
        "after caching: the MX presents a self-signed certificate",
        ("defer",),
        "RFC 8461 §4.2, §5.1",
        _sts("enforce"),
        _present("self"),
        prime=True,
    ),
    S(
        "txt-nxdomain-after-caching",
        "after caching: TXT removed (NXDOMAIN), MX swapped to the attacker",
        ("defer",),
        "RFC 8461 §5.1: a cached policy stays valid until max_age, whatever DNS says",
        _with_evil(_sts("enforce")),
        _then(_block("nxdomain"), _to_evil),
        prime=True,
    ),
    S(
        "txt-servfail-after-caching",
        "after caching: TXT SERVFAIL, MX swapped to the attacker",
        ("defer",),
        "RFC 8461 §5.1",
        _with_evil(_sts("enforce")),
        _then(_block("servfail"), _to_evil),
        prime=True,
    ),
    S(
        "txt-silence-after-caching",
        "after caching: TXT queries dropped (timeout), MX swapped",
        ("defer",),
        "RFC 8461 §5.1, §10",
        _with_evil(_sts("enforce")),
        _then(_block("drop"), _to_evil),
        prime=True,
    ),
    S(
        "new-id-host-down-after-caching",
        "after caching: TXT id changed, policy host down, MX swapped",
        ("defer",),
        "RFC 8461 §3.3, §5.1: if the new policy cannot be fetched, keep the cached one",
        _with_evil(_sts("enforce")),
        _then(_new_id, _down, _to_evil),
        prime=True,
    ),
    S(
        "host-down-strip-after-caching",
        "after caching: policy host down, STARTTLS stripped",
        ("defer",),
        "RFC 8461 §5.1",
        _sts("enforce"),
        _then(_down, _strip),
        prime=True,
    ),
    S(
        "policy-update-new-mx",
        "none: the domain moves to a new MX and publishes a new policy (new id)",
        ("tls:new",),
        "RFC 8461 §3.3: a new id means a new policy; deliver to the new MX",
        _sts("enforce"),
        _policy_update,
        prime=True,
    ),
    S(
        "max-age-expiry",
        "max_age 2 s; after expiry: TXT removed, policy host down, STARTTLS stripped",
        ("deliver",),
        "RFC 8461 §3.2, §5.1: an expired policy no longer applies",
        _sts("enforce", max_age=2),
        _then(_block("nxdomain"), _down, _strip),
        prime=True,
        wait=4.0,
    ),
    S(
        "mode-none-withdrawal",
        "the domain withdraws (mode none, new id), MX moves to a plaintext host",
        ("deliver",),
        "RFC 8461 §8.3: mode none replaces the cached policy",
        _with_evil(_sts("enforce")),
        _withdraw,
        prime=True,
    ),
    S(
        "idn-domain",
        "none: IDN domain bücher.test, policy and MX in A-labels",
        ("tls:mx",),
        "RFC 8461 §4.1 (names compared as A-labels), RFC 5891",
        _sts("enforce"),
    ),
    S(
        "null-mx",
        "none: the domain publishes a null MX",
        ("bounce",),
        "RFC 7505 §3: a null MX means the domain takes no mail",
        _null_mx,
    ),
    S(
        "second-mx",
        "the first MX presents a certificate for another name",
        ("tls:mx2",),
        "RFC 8461 §5: try the next MX; RFC 5321 §5.1",
        _second_mx,
    ),
    S(
        "dane-ee-match",
        "none: TLSA 3 1 1 pins a self-signed certificate",
        ("tls:mx",),
        "RFC 7672 §3.1.1: DANE-EE authenticates the key",
        _dane("self", "ee"),
        dane=True,
    ),
    S(
        "dane-ee-mismatch",
        "the MX presents a key the TLSA 3 1 1 does not pin",
        ("defer",),
        "RFC 7672 §2.2, §3: no match, do not deliver",
        _dane("self", "ee-other"),
        dane=True,
    ),
    S(
        "dane-ta-match",
        "none: TLSA 2 1 1 of a private CA that issued the MX certificate",
        ("tls:mx",),
        "RFC 7672 §3.1.2: DANE-TA",
        _dane("private-ca", "ta"),
        dane=True,
    ),
    S(
        "dane-ta-mismatch",
        "the TLSA 2 1 1 names another CA",
        ("defer",),
        "RFC 7672 §3.1.2, §2.2",
        _dane("private-ca", "ta-other"),
        dane=True,
    ),
    S(
        "dane-bogus",
        "the TLSA answer is bogus (the validating resolver answers SERVFAIL)",
        ("defer",),
        "RFC 7672 §2.1.1: a failed TLSA lookup under a signed zone defers",
        _dane("self", "ee", bogus=True),
        dane=True,
    ),
    S(
        "dane-fails-sts-passes",
        "the TLSA 3 1 1 pins another key; the MX certificate passes MTA-STS enforce",
        ("defer",),
        "RFC 8461 §2: MTA-STS MUST NOT override a failing DANE validation",
        _dane("good", "ee-other", sts="enforce"),
        dane=True,
    ),
    S(
        "dane-passes-sts-fails",
        "DANE-EE pins a self-signed certificate that MTA-STS enforce refuses",
        ("tls:mx", "defer"),
        "RFC 8461 §2 and RFC 7672 are silent; either is allowed "
        "(smtpsts: both must pass by default, DANE-50/AMB-11)",
        _dane("self", "ee", sts="enforce"),
        dane=True,
    ),
)
"""Every scenario, in table order."""


def expand(scenario: Scenario, observed: str) -> str:
    """
    The observed outcome with host names relative to the scenario's domain (``tls:mx``).

    Args:
        scenario: The scenario.
        observed: ``tls:mx.valid-enforce.test`` and the like.

    Returns:
        ``tls:mx``.
    """
    return observed.replace("." + scenario.domain, "")
