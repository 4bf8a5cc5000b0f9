"""A flow process counts as started only once its dataflow runs: bench.soak waits for that before
it calls anything missing lost, since on a loaded machine a restarted flow's imports alone can
outlast the soak's stall limit."""

from __future__ import annotations

from notifyflow.processes import FlowProcess, executions, init_recovery

FLOW = """
from bytewax.dataflow import Dataflow
import bytewax.operators as op
from bytewax.testing import TestingSource
from bytewax.connectors.stdio import StdOutSink

flow = Dataflow("counting")
op.output("out", op.input("in", flow, TestingSource(range(3))), StdOutSink())
"""


def test_a_flow_is_executing_once_its_dataflow_runs_and_not_again_until_its_restart_runs(tmp_path):
    (tmp_path / "counting_flow.py").write_text(FLOW)
    flow = FlowProcess("counting_flow:flow", tmp_path / "recovery", tmp_path / "flow.log",
                       env={"PYTHONPATH": str(tmp_path)})
    init_recovery(flow.recovery_dir)
    assert executions(flow.recovery_dir) == 0
    for run in (1, 2):
        flow.start()
        assert not flow.executing()  # the process exists; its dataflow does not yet
        assert flow.running_processes[0].wait(timeout=120) == 0, (tmp_path / "flow.log").read_text()
        assert flow.executing() and executions(flow.recovery_dir) == run
