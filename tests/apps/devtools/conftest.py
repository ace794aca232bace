"""Helpers for the devtools tests."""


def loadtest_measured(runs: dict, *, bare: dict | None = None, **params) -> dict:
    """What devtools.loadtest.run returns, for its reports: `runs` (name -> measurements), each with clean
    checks, the bare endpoint's figures, and the run parameters (`params` over a small default run; the
    runs' kinds follow from their names)."""
    defaults = {
        "clients": 200,
        "seconds": 15.0,
        "workers": 1,
        "threads": 2,
        "hit_size": 20,
        "rate": 300.0,
        "ramp": 16.0,
        "think": 0.67,
        "per_hit": 24,
        "engine": "postgresql",
        "web_instances": 1,
        "runs": tuple(name.split(" (")[0] for name in runs),
        "items": 4000,
        "study": None,
    }
    check = {"missing": 0, "duplicated": 0, "items_over_target_or_miscounted": 0}
    return {
        "runs": runs,
        "checks": {name: dict(check) for name in runs},
        "bare": bare or {"requests_per_s": 1000.0, "latency_ms": {"p99": 5.0}},
        "analyzing": False,
        "params": defaults | params,
    }
