"""Exercise of lesson 00, start here (queueing): Little's law, checked against a simulation."""
from __future__ import annotations

import functools

from labkit.checking import Exercise, Fail, number, register
from labkit.clock import Sim
from labkit.traffic import drive_traffic
from labkit.service import Service

littles_law = register(Exercise(
    "00.1", "how many requests are in flight?", answer="in_flight",
    hints=(
        "Picture one second: rate_rps requests arrive, and each stays for latency_s seconds.",
        "Little's law: the average number in the system = arrival rate x time each one spends inside.",
    )))


@functools.lru_cache(maxsize=None)
def _measured_in_flight(rate_rps: float, latency_s: float, seed: int) -> float:
    """Time-averaged requests in flight in a simulation with ample workers and fixed latency (seeded: cached)."""
    duration = max(20.0, 4000 / rate_rps)   # about 4,000 arrivals at every rate: within 2 % of the mean
    sim = Sim(seed)
    service = Service(sim, latency_s=latency_s, latency_sigma=0, max_concurrency=100_000)
    drive_traffic(sim, service, rate_rps=rate_rps, until_s=duration, timeout_s=None)
    sim.run()
    busy = sum(e.fields["latency_s"] for e in sim.trace.select("client", "request"))
    return busy / duration


@littles_law.scenario("matches a simulation at several rates and latencies")
def _matches(in_flight, ctx):
    if not callable(in_flight) or isinstance(in_flight, type):
        raise Fail(f"in_flight should be a function, def in_flight(rate_rps, latency_s): ...; got "
                   f"{type(in_flight).__name__} {in_flight!r:.80}.")
    # 1.5 and 2.5 in flight: an average is rarely a whole number, and rounding it (up, down or to the
    # nearest) is 20 % or more off there, twice the tolerance. 0.15 in flight: rounded to a tenth it
    # is a third off, and "at least one" is nearly seven times too many.
    for seed, (rate, latency) in enumerate([(30, 0.05), (5, 0.5), (400, 0.2), (2, 0.075)], 1):
        returned = in_flight(rate, latency)
        predicted = number(returned, f"in_flight({rate}, {latency}) returned", should="it should return a number")
        measured = _measured_in_flight(rate, latency, seed)
        if abs(predicted - measured) > 0.1 * measured:
            if abs(predicted - rate / latency) < 1e-6 * rate / latency:
                nudge = "It looks like you divided: a longer latency means more requests inside, not fewer."
            elif abs(predicted - rate * latency * 1000) < 1e-6 * rate * latency * 1000:
                nudge = "latency_s is in seconds, not milliseconds."
            elif predicted == 1 and measured < 0.5:
                nudge = ("An average can be below one: most of the time no request is in flight. Return it as "
                         "it is, with no floor of one.")
            elif (float(predicted).is_integer() and abs(predicted - measured) < 1) or (
                    round(predicted, 1) == predicted and abs(predicted - measured) <= 0.06):
                nudge = ("An average need not be a whole number, nor a round one: return it as it is, without "
                         "rounding it (up, down or to a tenth). Round up later, when you size a pool from it.")
            else:
                nudge = "How many arrive per second, and for how long does each one stay?"
            raise Fail(f"At {rate} requests/s and {latency * 1000:g} ms each, you predicted {predicted:g} in "
                       f"flight; the simulation measured {measured:.3g} on average. {nudge}")
    return "predictions within 10 % of the simulation"
