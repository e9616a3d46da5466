"""The robot's side, ROS-free: which plan each frame runs, and the robot's share of every frame.

One concern per module, read in this order:

- :mod:`.calibration`: measured / predicted compute per side and per plan (:class:`Calibration`), and drift;
- :mod:`.costs`: what sending a message costs (:class:`SendCost`) and the per-frame work no plan changes
  (:class:`FrameOverhead`);
- :mod:`.latency`: latencies measured per plan on the current link (:class:`LatencyBook`);
- :mod:`.explorer`: trials of split plans the cost model cannot separate from the choice (:class:`Explorer`);
- :mod:`.state`: the immutable plan state and the pricing snapshot behind it, replaced whole, never mutated;
- :mod:`.pricing`: one planning pass, from a snapshot of the measurements to a new pricing;
- :mod:`.controller`: :class:`PlanController`, the only place that decides, with its lock and planner thread;
- :mod:`.runtime`: :class:`RobotRuntime`, the model and its worker driven by the controller.

The words (segment, switch point, halo, tile, family, split extra, settled) are defined in docs/glossary.md.
"""
