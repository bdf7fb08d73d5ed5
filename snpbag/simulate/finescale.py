"""A fine-scale demography for population classification benchmarks (``snpbag simulate
--demography finescale``): three continents of four sub-populations each, where the
sub-population labels are hard to separate.

Backwards in time: each continent's four sub-populations arise by recent splits (pairs at
``SUB_SPLITS[0]`` generations, the pairs from one another at ``SUB_SPLITS[1]``), the three
continents split from one ancestral population at ``CONTINENT_SPLIT`` generations (the
second and third at ``CONTINENT_SPLIT * 0.8``); sub-populations of a continent exchange
migrants at ``MIGRATION_WITHIN`` per generation, sub-populations of different continents at
``MIGRATION_BETWEEN``. All sizes are constant. With splits this recent in populations this
large, sub-population differentiation (F_ST ~ t / 2N ~ 0.01) sits near what principal
components of a 10 Mb region resolve; continents (a small ancestor, F_ST ~ 0.1) are easy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import msprime

NAME = "snpbag/FineScale_3x4"
CONTINENTS = ("AFA", "EUA", "ASA")  # made-up continents, so no label reads as a real population
SUBPOPS = 4
#: (name, continent) in sample order; sub-populations are named <continent><1..4>
POPULATIONS: tuple[tuple[str, str], ...] = tuple((f"{c}{k + 1}", c) for c in CONTINENTS for k in range(SUBPOPS))
SUB_SIZE = 20_000  # diploid size of every sub-population and of the ancestor of each pair
CONTINENT_SIZE = 3_000  # of a continent's ancestor, between the continent split and the sub-population splits
ANCESTRAL_SIZE = 10_000
SUB_SPLITS = (300, 600)  # generations: pairs, then the two pairs of a continent
CONTINENT_SPLIT = 1_500  # generations
MIGRATION_WITHIN = 1e-4  # per generation, between sub-populations of a continent
MIGRATION_BETWEEN = 1e-5  # per generation, between sub-populations of different continents

PARAMETERS = {"sub_size": SUB_SIZE, "continent_size": CONTINENT_SIZE, "ancestral_size": ANCESTRAL_SIZE,
              "sub_splits": list(SUB_SPLITS), "continent_split": CONTINENT_SPLIT,
              "migration_within": MIGRATION_WITHIN, "migration_between": MIGRATION_BETWEEN}


def demography() -> msprime.Demography:
    """The msprime Demography described in the module docstring."""
    import msprime

    d = msprime.Demography()
    for name, _ in POPULATIONS:
        d.add_population(name=name, initial_size=SUB_SIZE)
    for c in CONTINENTS:
        for k in (12, 34):
            d.add_population(name=f"{c}{k}", initial_size=SUB_SIZE)
        d.add_population(name=c, initial_size=CONTINENT_SIZE)
    d.add_population(name="EUAS", initial_size=ANCESTRAL_SIZE)
    d.add_population(name="ANC", initial_size=ANCESTRAL_SIZE)
    names = [p for p, _ in POPULATIONS]
    for i, (a, ca) in enumerate(POPULATIONS):
        for b, cb in POPULATIONS[i + 1:]:
            d.set_symmetric_migration_rate([a, b], MIGRATION_WITHIN if ca == cb else MIGRATION_BETWEEN)
    for c in CONTINENTS:
        d.add_population_split(time=SUB_SPLITS[0], derived=[f"{c}1", f"{c}2"], ancestral=f"{c}12")
        d.add_population_split(time=SUB_SPLITS[0], derived=[f"{c}3", f"{c}4"], ancestral=f"{c}34")
        d.add_symmetric_migration_rate_change(time=SUB_SPLITS[0], populations=[f"{c}12", f"{c}34"],
                                              rate=MIGRATION_WITHIN)
        d.add_population_split(time=SUB_SPLITS[1], derived=[f"{c}12", f"{c}34"], ancestral=c)
    d.add_population_split(time=CONTINENT_SPLIT * 0.8, derived=[CONTINENTS[1], CONTINENTS[2]], ancestral="EUAS")
    d.add_population_split(time=CONTINENT_SPLIT, derived=[CONTINENTS[0], "EUAS"], ancestral="ANC")
    d.sort_events()
    assert len(names) == len(CONTINENTS) * SUBPOPS
    return d
