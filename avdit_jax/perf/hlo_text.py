"""Reading a compiled program's HLO text: collective counts, while loops and their trip counts, matmul FLOPs,
and what each instruction of the entry computation runs (for attributing a profile's op times).

XLA's cost analysis counts a while loop's body once. On some TPU slices XLA turns the FSDP all-gathers and
reduce-scatters into windowed einsums (collective matmuls): while loops whose body does one shard's matmul
per iteration, so the cost analysis misses most of their FLOPs. `loop_flops_missed` gives what it misses,
from the shapes of the dots and convolutions inside the loops and the loops' trip counts.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")

_ARRAY = re.compile(r"^[a-z]\w*\[([\d,]*)\]")        # 'bf16[32,445,768]{layout}' -> '32,445,768'
_OP = re.compile(r"\s([a-z][\w\-]*)\(")              # the first 'op(' after the result type


def collectives(hlo: str) -> dict:
  """Counts of each collective op site in the HLO."""
  counts = collections.Counter()
  for op in COLLECTIVES:
    counts[op] = len(re.findall(rf"\b{op}(?:-start)?\(", hlo))
  return {k: v for k, v in counts.items() if v}


@dataclasses.dataclass
class _Computation:
  dot_flops: dict = dataclasses.field(default_factory=dict)   # instruction -> FLOPs of its own dot / convolution
  batched: set = dataclasses.field(default_factory=set)       # the dots among them with batch dimensions
  callees: list = dataclasses.field(default_factory=list)     # fusions, calls: run once per run of this
  loops: list = dataclasses.field(default_factory=list)       # (condition, body, op name, while line)
  lines: list = dataclasses.field(default_factory=list)

  @property
  def matmul_flops(self) -> float:
    return sum(self.dot_flops.values())


def _dims(text: str) -> tuple[int, ...] | None:
  m = _ARRAY.match(text)
  return None if m is None else tuple(int(d) for d in m.group(1).split(",") if d)


def _operands(args: str) -> list[str]:
  return re.findall(r"%([\w.\-]+)", args.split(")", 1)[0])


def _matmul_flops(op: str, out: tuple, rest: str, shapes: dict) -> float:
  """2 x multiply-adds, for a dot or a convolution (XLA's convention)."""
  if op == "dot":
    lhs = shapes.get(_operands(rest)[0])
    contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", rest)
    if lhs is None or contracting is None:
      return 0.0
    return 2.0 * math.prod(out) * math.prod(lhs[int(i)] for i in contracting.group(1).split(",") if i)
  operands = _operands(rest)
  labels = re.search(r"dim_labels=(\w+)_(\w+)->(\w+)", rest)
  lhs, rhs = (shapes.get(o) for o in (operands + [None, None])[:2])
  if lhs is None or rhs is None or labels is None:
    return 0.0
  lhs_l, rhs_l, out_l = labels.groups()
  flops = 2.0 * out[out_l.index("b")] * out[out_l.index("f")] * rhs[rhs_l.index("i")]
  spatial = sum(c.isdigit() for c in out_l)
  attr = lambda key, default: ([[int(x) for x in v.split("_")] for v in m.group(1).split("x")]
                               if (m := re.search(rf"\b{key}=([-\d_x]+)", rest)) else [default] * spatial)
  size, stride, pad = attr("size", [1]), attr("stride", [1]), attr("pad", [0, 0])
  lhs_dilate, rhs_dilate = attr("lhs_dilate", [1]), attr("rhs_dilate", [1])
  # Count the (output position, kernel tap) pairs that land on an input value, per spatial dim, as XLA's cost
  # analysis does: XLA writes batched and outer-product matmuls as convolutions whose windows mostly hit
  # padding or dilation holes (e.g. a window over the heads with pad 11_11 against an input of size 1).
  for d in range(spatial):
    n, m = lhs[lhs_l.index(str(d))], out[out_l.index(str(d))]
    last = (n - 1) * lhs_dilate[d][0]
    flops *= sum(1 for o in range(m) for k in range(size[d][0])
                 if 0 <= (x := o * stride[d][0] + k * rhs_dilate[d][0] - pad[d][0]) <= last
                 and x % lhs_dilate[d][0] == 0)
  return flops


def parse(hlo: str) -> dict[str, _Computation]:
  """The computations of an HLO module by name, each with its own matmul FLOPs, callees and while loops."""
  comps, shapes, current = {}, {}, None
  for line in hlo.splitlines():
    if not line.startswith(" "):
      header = re.match(r"(?:ENTRY )?%([\w.\-]+) ", line)
      if header and line.rstrip().endswith("{"):
        current = comps.setdefault(header.group(1), _Computation())
      continue
    m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = (.*)", line)
    if m is None or current is None:
      continue
    name, rest = m.groups()
    dims = _dims(rest)
    if dims is not None:
      shapes[name] = dims
    current.lines.append((name, rest))
  for comp in comps.values():
    for name, rest in comp.lines:
      op = _OP.search(rest)
      op = op.group(1) if op else ""
      if op in ("dot", "convolution") and (out := _dims(rest)) is not None:
        comp.dot_flops[name] = _matmul_flops(op, out, rest[rest.index(op + "("):], shapes)
        if op == "dot" and re.search(r"lhs_batch_dims=\{\d", rest):
          comp.batched.add(name)
      elif op == "while":
        cond, body = (re.search(rf"{k}=%([\w.\-]+)", rest).group(1) for k in ("condition", "body"))
        where = re.search(r'op_name="([^"]+)"', rest)
        comp.loops.append((cond, body, where.group(1) if where else "?", rest))
      else:
        comp.callees += re.findall(r"(?:calls|to_apply)=%([\w.\-]+)", rest)
  return comps


def trip_count(comps: dict, condition: str, while_line: str = "") -> int | None:
  """A counted loop's trip count: XLA's known_trip_count when it wrote one, else the bound of the 'LT'
  compare in its condition (the counter runs from 0; XLA's TPU windowed einsums are written this way)."""
  known = re.search(r'"known_trip_count":\{"n":"(\d+)"\}', while_line)
  if known:
    return int(known.group(1))
  cond = comps.get(condition)
  if cond is None:
    return None
  constants = {n: int(v.group(1)) for n, r in cond.lines if (v := re.match(r"[su]\d+\[\]\S* constant\((\d+)\)", r))}
  for _, rest in cond.lines:
    if " compare(" in rest and "direction=LT" in rest:
      bound = [constants[o] for o in _operands(rest[rest.index("compare("):]) if o in constants]
      if bound:
        return bound[0]
  return None


def loops(hlo: str) -> list[dict]:
  """Every while loop: its op name, trip count (None when unknown) and the matmul FLOPs of one iteration."""
  comps = parse(hlo)
  return [{"op_name": where, "trip_count": trip_count(comps, cond, line), "body_flops": _flops(comps, body, False)}
          for comp in comps.values() for cond, body, where, line in comp.loops]


def _flops(comps: dict, name: str, with_trips: bool, _seen=()) -> float:
  comp = comps.get(name)
  if comp is None or name in _seen:
    return 0.0
  seen = _seen + (name,)
  total = comp.matmul_flops + sum(_flops(comps, c, with_trips, seen) for c in comp.callees)
  for cond, body, _, line in comp.loops:
    trips = (trip_count(comps, cond, line) or 1) if with_trips else 1
    total += trips * _flops(comps, body, with_trips, seen)
  return total


def entry_name(hlo: str) -> str:
  return re.search(r"^ENTRY %([\w.\-]+) ", hlo, re.M).group(1)


def matmul_flops(hlo: str, *, with_trips: bool = True) -> float:
  """Matmul FLOPs of one run of the entry computation; with_trips=False counts each loop body once (as
  XLA's cost analysis does)."""
  return _flops(parse(hlo), entry_name(hlo), with_trips)


def loop_flops_missed(hlo: str) -> float:
  """Matmul FLOPs that counting each loop body once leaves out (0 for a program without counted loops)."""
  comps, entry = parse(hlo), entry_name(hlo)
  return _flops(comps, entry, True) - _flops(comps, entry, False)


def _batched(comps: dict, name: str, _seen=()) -> bool:
  comp = comps.get(name)
  if comp is None or name in _seen:
    return False
  return bool(comp.batched) or any(_batched(comps, c, _seen + (name,)) for c in comp.callees)


def entry_instructions(hlo: str) -> dict[str, dict]:
  """The instructions of the entry computation, which a CPU profile times one by one, by name: their op_name
  metadata ('' if none), the matmul FLOPs each runs (its own dot or those of the computation it calls) and
  whether those include a batched matmul (a dot with batch dimensions, as attention's)."""
  comps = parse(hlo)
  entry = comps[entry_name(hlo)]
  out = {}
  for name, rest in entry.lines:
    op = _OP.search(rest)
    op = op.group(1) if op else ""
    callees = re.findall(r"(?:calls|to_apply)=%([\w.\-]+)", rest)
    flops = entry.dot_flops.get(name, 0.0) + sum(_flops(comps, c, True) for c in callees)
    batched = name in entry.batched or any(_batched(comps, c) for c in callees)
    where = re.search(r'op_name="([^"]+)"', rest)
    out[name] = {"op": op, "op_name": where.group(1) if where else "", "matmul_flops": flops, "batched": batched}
  return out
