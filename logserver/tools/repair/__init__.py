"""``logserver repair``: every record back to N copies on live servers (issue 13).

- :mod:`._plan`: what is short and where each missing copy comes from and goes
  (pure computation over the servers' holdings);
- :mod:`._servers`: the calls to the servers (``Status``, ``Holdings``,
  ``ReadBatches``, ``Restore``);
- :mod:`._repair`: one run: survey, plan, copy, check (:class:`Repairer`);
- :mod:`._cli`: the command.
"""

from logserver.tools.repair._cli import add_arguments, run_repair
from logserver.tools.repair._plan import Copy, LiveServer, Plan, Short, plan_category
from logserver.tools.repair._repair import CategoryReport, Repairer, RepairReport

__all__ = [
    "CategoryReport",
    "Copy",
    "LiveServer",
    "Plan",
    "RepairReport",
    "Repairer",
    "Short",
    "add_arguments",
    "plan_category",
    "run_repair",
]
