"""`tcpstress compare SCENARIO --profiles a,b`: shipped tuning profiles as the variants, no scenario to write."""

from __future__ import annotations

from dataclasses import replace

from tcpstress.scenario import Scenario, ScenarioError, Variant


def with_profiles(scenario: Scenario, names_text: str) -> Scenario:
    """The scenario with one variant per named profile (scenarios/profiles.toml), in the order given.

    Profiles set sysctls, which tcpstress changes only inside the namespaces of
    its lab: a scenario without `lab = true` is refused rather than run with
    settings it would silently not apply.
    """
    from tcpstress.lab.profiles import shipped_profiles
    from tcpstress.lab.sysctl import ProfileError

    names = [n.strip() for n in names_text.split(",") if n.strip()]
    if not names:
        raise ScenarioError("--profiles: give one or more profile names, comma-separated (tcpstress profiles lists them)")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ScenarioError(f"--profiles: {', '.join(repeated)} named twice")
    if not scenario.lab:
        raise ScenarioError(f"--profiles: {scenario.source or scenario.name} has no lab = true; profiles set "
                            "sysctls, which tcpstress changes only inside its lab's namespaces")
    try:
        known = shipped_profiles()
    except (ProfileError, OSError) as e:
        raise ScenarioError(f"--profiles: {e}") from None
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ScenarioError(f"--profiles: no profile {', '.join(map(repr, unknown))}; the shipped ones are "
                            f"{', '.join(known)}")
    return replace(scenario, variants=tuple(Variant(name=n, description=known[n].description, profile=n)
                                            for n in names))
