"""notifyflow's shell: the `notifyflow` command, the demo, the local stack and flow runners, and
on-call's tools (user export and erasure, retention, dead-letter replay)."""
