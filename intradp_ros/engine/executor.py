"""Runs a compiled plan: the robot's share and the edge's share (the aggregator's reassembly: assembly.py).

Transport-agnostic: workers exchange :class:`Packet` objects (the ROS-free twin of ``msg/TensorTile``).
The robot emits each packet the moment it exists (so a sender thread can overlap transmission with the
next tile's computation); the edge computes a tile as soon as its input rows have arrived.

Example (everything in one process, e.g. for tests)::

    outputs = run_collaborative(graph, plan, x)
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from .assembly import Assembler, FrameOutputs, full_rows
from .codec import encode, is_u8_exact
from .device import synchronize
from .graph import OpGraph
from .packet import STAGE_SPLIT, STAGE_SUFFIX, STAGE_WHOLE, Packet, ProtocolError
from .plan import CompiledPlan, Plan, compile_plan
from .rows import RowStreamer

__all__ = ["RobotWorker", "EdgeWorker", "run_collaborative", "OutputFn"]

# (output name, rows of the output [N, C, rows, W] or the whole non-spatial output, first row) -> payload tensor.
# Lets a model reduce its raw outputs per tile (e.g. YOLO heads -> box candidates) before they travel.
OutputFn = Callable[[str, torch.Tensor, int], torch.Tensor]

def _packet(plan: Plan, seq: int, name: str, t: torch.Tensor, rows: tuple[int, int], shape, *, stage: int,
            index: int, count: int, sender: str, dest: str, encoding: str, compute_ms: float,
            halo: tuple[int, int] = (0, 0)) -> Packet:
    payload, dtype = encode(t, encoding)
    return Packet(seq, plan.spec(), name, stage, index, count, sender, dest, rows[0], rows[1], tuple(shape),
                  tuple(t.shape), dtype, encoding, payload, halo[0], halo[1], compute_ms)


class _Emitter:
    """Builds output packets for the aggregator, applying the model's output reduction."""

    def __init__(self, graph: OpGraph, output_fn: OutputFn | None):
        self.graph, self.output_fn = graph, output_fn

    def __call__(self, plan, seq, name, rows_t, rows, *, stage, index, count, sender, compute_ms) -> Packet:
        rows_t = rows_t.cpu()
        payload_t = self.output_fn(name, rows_t, rows[0]) if self.output_fn else rows_t
        encoding = plan.encoding
        if payload_t.dtype == torch.uint8:     # class ids (a dense task's mask): exact as u8, a byte each
            encoding = "u8"
        return _packet(plan, seq, name, payload_t, rows, self.graph.value_shape(name), stage=stage, index=index,
                       count=count, sender=sender, dest="aggregator", encoding=encoding, compute_ms=compute_ms)


class RobotWorker:
    """The robot's share of a frame: prefix ops, then its tiles of the split segment."""

    def __init__(self, graph: OpGraph, output_fn: OutputFn | None = None, device: str | torch.device = "cpu"):
        self.graph, self.device = graph, torch.device(device)
        self.last_whole_ms = self.last_tiles_ms = 0.0
        self.last_packed: list[tuple[float, str, float]] = []   # (raw MB, encoding, ms) per packet for the edge
        self._emit_out = _Emitter(graph, output_fn)

    def run_frame(self, seq: int, plan: Plan | str, x: torch.Tensor | None, emit: Callable[[Packet], None],
                  input_is_u8: bool | None = None, x_u8: torch.Tensor | None = None) -> float:
        """Compute the robot's share of frame ``seq``; ``emit`` is called with each packet as soon as it exists.

        ``x_u8``: the uint8 input ``x`` is made from (``x == x_u8 / 255``): the input's packets are its bytes, and
        ``x`` may be None: it is made on this worker's device only when the plan computes something here.

        Returns the robot's compute time in ms (encoding included). The operators' share of it, what the planner's
        profile predicts, is ``self.last_whole_ms`` (whole-tensor ops) + ``self.last_tiles_ms`` (row tiles).
        """
        g = self.graph
        self.last_whole_ms = self.last_tiles_ms = 0.0
        self.last_packed = []
        cp = compile_plan(g, plan)
        plan = cp.plan
        if x is None:
            input_is_u8 = True
            if cp.robot_ops or cp.segment is not None:
                x = x_u8.to(self.device).to(torch.float32).div_(255.0)
        elif input_is_u8 is None:
            input_is_u8 = is_u8_exact(x)
        enc_of = lambda name: "u8" if name == g.input_name and input_is_u8 else plan.encoding  # noqa: E731
        u8 = x_u8 if input_is_u8 else None
        wire = lambda name, t: u8 if name == g.input_name and u8 is not None else t  # noqa: E731 - what travels
        env: dict[str, torch.Tensor] = {g.input_name: x} if x is not None else {}
        busy = 0.0
        with torch.inference_mode():
            for k in cp.robot_ops:
                t0 = time.perf_counter()
                op = g.ops[k]
                env[op.name] = g.run_op(op, env)
                g.drop_dead(env, k)     # values the edge or the segment reads are read after op k
                dt = (time.perf_counter() - t0) * 1e3
                busy += dt
                self.last_whole_ms += dt
                if op.name in g.outputs:    # compute_ms: the frame's robot compute so far (the last carries all)
                    emit(self._emit_out(plan, seq, op.name, env[op.name], full_rows(g, op.name), stage=STAGE_WHOLE,
                                        index=0, count=1, sender="robot", compute_ms=busy))
            for i, name in enumerate(cp.to_edge_whole):
                t0 = time.perf_counter()
                t = wire(name, env.get(name))
                pkt = _packet(plan, seq, name, t, full_rows(g, name), g.value_shape(name),
                              stage=STAGE_WHOLE, index=i, count=len(cp.to_edge_whole), sender="robot", dest="edge",
                              encoding=enc_of(name), compute_ms=busy)
                dt = (time.perf_counter() - t0) * 1e3
                busy += dt
                self.last_packed.append((t.numel() * 4 / 1e6, enc_of(name), dt))
                emit(pkt)
            seg = cp.segment
            if seg is None:
                return busy
            inp = seg.input
            x_in = env[inp]
            axis = g.value_row_axis(inp)
            own_lo = cp.plan.robot_rows * x_in.shape[axis] // seg.grid
            for j, (lo, hi) in enumerate(cp.edge_chunks):   # the edge's input first: it starts while we compute
                t0 = time.perf_counter()
                chunk = wire(inp, x_in).narrow(axis, lo, hi - lo)
                pkt = _packet(plan, seq, inp, chunk, (lo, hi), x_in.shape,
                              stage=STAGE_SPLIT, index=j, count=len(cp.edge_chunks), sender="robot", dest="edge",
                              encoding=enc_of(inp), compute_ms=busy, halo=(max(0, own_lo - lo), 0))
                dt = (time.perf_counter() - t0) * 1e3
                busy += dt
                self.last_packed.append((chunk.numel() * 4 / 1e6, enc_of(inp), dt))
                emit(pkt)
            streamer = RowStreamer(seg)
            streamer.feed(inp, x_in, 0)
            n = len(cp.robot_work)
            for i, work in enumerate(cp.robot_work):
                t0 = time.perf_counter()
                rows = streamer.compute(work.targets)
                dt = (time.perf_counter() - t0) * 1e3
                self.last_tiles_ms += dt
                for name, t in rows.items():
                    t1 = time.perf_counter()
                    r = work.targets[name]
                    if name in seg.gathered:
                        emit(_packet(plan, seq, name, t, r, g.value_shape(name), stage=STAGE_SPLIT, index=i,
                                     count=n, sender="robot", dest="edge", encoding=plan.encoding,
                                     compute_ms=busy + dt))
                    if name in seg.emitted:
                        emit(self._emit_out(plan, seq, name, t, r, stage=STAGE_SPLIT, index=i, count=n,
                                            sender="robot", compute_ms=busy + dt))
                    dt += (time.perf_counter() - t1) * 1e3
                busy += dt
        return busy


class _EdgeFrame:
    """The edge's state for one frame: received rows, its streamer, what is gathered."""

    def __init__(self, cp: CompiledPlan):
        self.cp = cp
        self.whole: dict[str, torch.Tensor] = {}
        self.streamer = RowStreamer(cp.segment) if cp.segment else None
        self.chunks = 0
        self.next_tile = 0
        self.robot_rows: dict[str, dict[int, torch.Tensor]] = {}
        self.done = False
        self.compute_ms = 0.0
        self.robot_ms = 0.0            # the robot's compute so far, and its payload bytes here (for FrameTiming)
        self.robot_bytes = 0


class EdgeWorker:
    """The edge's share: computes tiles as their input arrives, gathers at the switch point, runs the rest."""

    def __init__(self, graph: OpGraph, output_fn: OutputFn | None = None, device: str | torch.device = "cpu"):
        self.graph, self.device = graph, torch.device(device)
        self._emit_out = _Emitter(graph, output_fn)
        self.frames: dict[tuple[str, int], _EdgeFrame] = {}   # (session, seq) -> state

    def on_packet(self, pkt: Packet) -> list[Packet]:
        """Consume one packet from the robot; returns the packets now ready for the aggregator.

        Raises PlanError / CodecError / ProtocolError for packets that cannot be used (the frame is dropped).
        """
        g = self.graph
        cp = compile_plan(g, pkt.plan_spec)
        if pkt.tensor != g.input_name and pkt.tensor not in g.by_name:
            raise ProtocolError(f"tile names tensor {pkt.tensor!r}, which this model does not have")
        if tuple(pkt.shape) != tuple(g.value_shape(pkt.tensor)):
            raise ProtocolError(f"{pkt.tensor}: shape {tuple(pkt.shape)} != model's {g.value_shape(pkt.tensor)}")
        self._check_rows(pkt)          # before decoding: a hostile header must not make us allocate for it
        key = (pkt.session, pkt.frame_seq)      # robots sharing this edge count frames alike
        fr = self.frames.get(key)
        if fr is None:
            fr = self.frames[key] = _EdgeFrame(cp)
        elif fr.cp is not cp:
            raise ProtocolError(f"frame {pkt.frame_seq}: tiles of two plans ({fr.cp.plan.spec()} and {pkt.plan_spec})")
        if fr.done:
            raise ProtocolError(f"frame {pkt.frame_seq} is already complete ({pkt.tensor} tile {pkt.tile_index})")
        x = pkt.value().to(self.device)
        fr.robot_ms, fr.robot_bytes = max(fr.robot_ms, pkt.compute_ms), fr.robot_bytes + len(pkt.payload)
        out: list[Packet] = []
        with torch.inference_mode():
            if pkt.stage == STAGE_WHOLE:
                if pkt.tensor not in cp.to_edge_whole:
                    raise ProtocolError(f"{pkt.tensor} is not sent whole under plan {pkt.plan_spec}")
                fr.whole[pkt.tensor] = x
                if len(fr.whole) == len(cp.to_edge_whole):
                    out += self._suffix(pkt.frame_seq, fr, fr.whole)
            elif pkt.stage == STAGE_SPLIT and cp.segment is not None:
                seg = cp.segment
                if pkt.tensor == seg.input:
                    if pkt.tile_index != fr.chunks:
                        raise ProtocolError(f"input chunk {pkt.tile_index} arrived, expected {fr.chunks}")
                    fr.streamer.feed(pkt.tensor, x, pkt.row_start)
                    fr.chunks += 1
                    out += self._edge_tiles(pkt.frame_seq, fr)
                elif pkt.tensor in seg.gathered:
                    fr.robot_rows.setdefault(pkt.tensor, {})[pkt.row_start] = x
                else:
                    raise ProtocolError(f"{pkt.tensor} does not travel to the edge under plan {pkt.plan_spec}")
                out += self._maybe_gather(pkt.frame_seq, fr)
            else:
                raise ProtocolError(f"stage {pkt.stage} is not valid for plan {pkt.plan_spec}")
        if fr.done:
            del self.frames[key]
        for p in out:
            p.session, p.robot_ms, p.robot_bytes = pkt.session, fr.robot_ms, fr.robot_bytes
        return out

    def _check_rows(self, pkt: Packet) -> None:
        """The declared rows and payload shape fit the model's tensor (the payload is checked against them when
        decoded, with decompression capped at that size)."""
        g = self.graph
        axis = g.value_row_axis(pkt.tensor)
        want = list(g.value_shape(pkt.tensor))
        if axis is None:
            if (pkt.row_start, pkt.row_stop) != (0, 0) or tuple(pkt.payload_shape) != tuple(want):
                raise ProtocolError(f"{pkt.tensor}: a non-spatial value must travel whole")
            return
        h = want[axis]
        if not 0 <= pkt.row_start < pkt.row_stop <= h:
            raise ProtocolError(f"{pkt.tensor}: rows [{pkt.row_start}, {pkt.row_stop}) outside 0..{h}")
        want[axis] = pkt.row_stop - pkt.row_start
        if tuple(pkt.payload_shape) != tuple(want):
            raise ProtocolError(f"{pkt.tensor}: payload shape {tuple(pkt.payload_shape)} does not match rows "
                                f"{tuple(want)}")

    def _edge_tiles(self, seq: int, fr: _EdgeFrame) -> list[Packet]:
        cp, seg, out = fr.cp, fr.cp.segment, []
        n = len(cp.edge_work)
        while fr.next_tile < n and cp.chunks_needed[fr.next_tile] <= fr.chunks:
            work = cp.edge_work[fr.next_tile]
            t0 = time.perf_counter()
            rows = fr.streamer.compute(work.targets)
            synchronize(self.device)          # time the GPU's work, not its launch
            fr.compute_ms += (time.perf_counter() - t0) * 1e3
            for name in seg.emitted:
                if name in rows:   # compute_ms: the frame's edge compute so far, so the last output carries the total
                    out.append(self._emit_out(cp.plan, seq, name, rows[name], work.targets[name], stage=STAGE_SPLIT,
                                              index=fr.next_tile, count=n, sender="edge", compute_ms=fr.compute_ms))
            fr.next_tile += 1
        return out

    def _maybe_gather(self, seq: int, fr: _EdgeFrame) -> list[Packet]:
        cp, seg = fr.cp, fr.cp.segment
        if fr.next_tile < len(cp.edge_work):
            return []
        n_robot = len(cp.robot_work)
        if any(len(fr.robot_rows.get(t, {})) < n_robot for t in seg.gathered):
            return []
        env = {}
        for t in seg.gathered:
            parts = [fr.robot_rows.get(t, {})[k] for k in sorted(fr.robot_rows.get(t, {}))]
            axis = self.graph.value_row_axis(t)
            h = self.graph.value_shape(t)[axis]
            split_row = cp.plan.robot_rows * h // seg.grid
            if split_row < h:
                parts.append(fr.streamer.buf[t].rows(split_row, h))
            env[t] = torch.cat(parts, axis) if len(parts) > 1 else parts[0]
        fr.streamer = None
        return self._suffix(seq, fr, env)

    def _suffix(self, seq: int, fr: _EdgeFrame, env: dict[str, torch.Tensor]) -> list[Packet]:
        g, cp, out = self.graph, fr.cp, []
        t0 = time.perf_counter()
        for k in cp.edge_ops:
            op = g.ops[k]
            env[op.name] = g.run_op(op, env)
            g.drop_dead(env, k)
        synchronize(self.device)
        fr.compute_ms += (time.perf_counter() - t0) * 1e3
        produced = [name for name in g.outputs if g.producer_index(name) >= cp.plan.seg_end]
        for i, name in enumerate(produced):
            out.append(self._emit_out(cp.plan, seq, name, env[name], full_rows(g, name), stage=STAGE_SUFFIX,
                                      index=i, count=len(produced), sender="edge", compute_ms=fr.compute_ms))
        fr.done = True
        return out


def run_collaborative(graph: OpGraph, plan: Plan | str, x: torch.Tensor, output_fn: OutputFn | None = None,
                      seq: int = 0) -> FrameOutputs:
    """Run one frame through robot, edge and aggregator in this process, every packet encoded and decoded."""
    robot, edge, agg = RobotWorker(graph, output_fn), EdgeWorker(graph, output_fn, x.device), Assembler(graph)
    to_edge: list[Packet] = []
    to_agg: list[Packet] = []
    robot.run_frame(seq, plan, x, lambda p: (to_edge if p.dest == "edge" else to_agg).append(p))
    for p in to_edge:
        to_agg += edge.on_packet(p)
    result = None
    for p in to_agg:
        result = agg.add(p) or result
    if result is None:
        raise RuntimeError("frame did not complete: a plan/executor bug")
    return result

