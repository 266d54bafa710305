"""A mitigation's story, read from what Sluice already records: what happened, whether it works, and what each
FlowSpec rule hits. Pure reads (no writes, no events, no device I/O), shared by the SOC and the customer faces,
which decide what of it each reader may see.

Counter figures follow `RuleCounterSample`: cumulative per action and router; a router that could not be read has
no sample (a gap stays a gap, never a zero), and a cumulative figure that goes down starts a new run (the rule was
installed anew), so no rate is taken across it.
"""

from mitigation.story.candidates import STATUS_WORDS, CandidateCenter, candidate_centers
from mitigation.story.counters import (
    ElementCounters,
    Rate,
    RuleCounterSummary,
    Sample,
    counter_rates,
    counter_samples,
    last_hit,
    rule_counters_of,
)
from mitigation.story.history import TimelineEntry, latest_verdict, timeline, verdict_figures
from mitigation.story.rule_hits import NeverMatchedRule, RuleHitStats, RuleLimitUse, rule_hit_stats
from mitigation.story.text import rate_text, rates_text, route_text
from mitigation.story.traffic import TrafficSeries, traffic_series

__all__ = [
    "STATUS_WORDS", "CandidateCenter", "ElementCounters", "NeverMatchedRule", "Rate", "RuleCounterSummary",
    "RuleHitStats", "RuleLimitUse", "Sample", "TimelineEntry", "TrafficSeries", "candidate_centers", "counter_rates",
    "counter_samples", "last_hit", "latest_verdict", "rate_text", "rates_text", "route_text", "rule_counters_of",
    "rule_hit_stats", "timeline", "traffic_series", "verdict_figures",
]
