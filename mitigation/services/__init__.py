"""Service functions of the control plane. Import from the submodules; this package only groups them.

signals: record_signal. planning: plan_attacks. network: converge_network (apply, verify, withdraw and reconcile
are one desired-state path). lifecycle: approve, reject, withdraw, tick. panic: the kill switch.
"""
