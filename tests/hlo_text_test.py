"""Reading compiled HLO text: matmul FLOPs against shapes worked out by hand, loops at their trip counts."""

import jax
import jax.numpy as jnp
import numpy as np

from avdit_jax.perf import hlo_text


def _hlo(fn, *shapes):
  return jax.jit(fn).lower(*(jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes)).compile().as_text()


def test_matmul_flops_of_dots_batched_dots_and_convolutions():
  assert hlo_text.matmul_flops(_hlo(lambda a, b: jnp.tanh(a @ b), (64, 96), (96, 32))) == 2 * 64 * 96 * 32
  bmm = _hlo(lambda a, b: jnp.einsum("bld,bmd->blm", a, b), (4, 16, 8), (4, 24, 8))
  assert hlo_text.matmul_flops(bmm) == 2 * 4 * 16 * 24 * 8
  conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  # 'SAME' 3x3 on 6x6: the border outputs see fewer than 9 input pixels; XLA counts only the taps that do.
  taps = sum(len([k for k in range(3) if 0 <= o + k - 1 < 6]) for o in range(6)) ** 2
  assert hlo_text.matmul_flops(_hlo(conv, (2, 6, 6, 5), (3, 3, 5, 7))) == 2 * 2 * 7 * 5 * taps
  # A negative pad crops the input (XLA writes some TPU matmuls so): 3 taps on 6 pixels cropped by 1 at the end.
  crop = lambda x, k: jax.lax.conv_general_dilated(x, k, (1,), [(0, -1)], dimension_numbers=("NWC", "WIO", "NWC"))
  hlo = _hlo(crop, (2, 6, 5), (3, 5, 7))
  assert "pad=0_-1" in hlo and hlo_text.matmul_flops(hlo) == 2 * 2 * 7 * 5 * 3 * 3


def test_loops_count_at_their_trip_count_and_what_counting_once_misses():
  def repeated(a, b):
    return jax.lax.fori_loop(0, 5, lambda i, x: jnp.tanh(x @ b), a)
  hlo = _hlo(repeated, (32, 48), (48, 48))
  once = 2 * 32 * 48 * 48
  [loop] = hlo_text.loops(hlo)
  assert loop["trip_count"] == 5 and loop["body_flops"] == once
  assert hlo_text.matmul_flops(hlo, with_trips=False) == once
  assert hlo_text.matmul_flops(hlo) == 5 * once
  assert hlo_text.loop_flops_missed(hlo) == 4 * once
  # XLA's own count agrees with the HLO's body-once count (plus its elementwise work).
  cost = jax.jit(repeated).lower(np.zeros((32, 48), np.float32), np.zeros((48, 48), np.float32)).compile()
  xla = cost.cost_analysis()
  xla = (xla[0] if isinstance(xla, (list, tuple)) else xla)["flops"]
  assert once <= xla < 1.1 * once


def test_collective_counts():
  hlo = ("%a = f32[4]{0} all-reduce(%x), to_apply=%add\n%b = f32[8]{0} all-gather-start(%y)\n"
         "%c = f32[8]{0} all-gather(%z)")
  assert hlo_text.collectives(hlo) == {"all-reduce": 1, "all-gather": 2}


def test_entry_instructions_carry_the_matmul_flops_and_op_names_a_profile_is_sorted_by():
  def attention_like(x, w):
    q = jnp.tanh(x @ w)                                                  # [4, 16, 8]: a plain (2D) matmul
    with jax.named_scope("core"):
      return jnp.einsum("bld,bmd->blm", q, q).sum()                     # a batched matmul
  hlo = _hlo(attention_like, (4, 16, 8), (8, 8))
  instructions = hlo_text.entry_instructions(hlo)
  matmuls = {n: i for n, i in instructions.items() if i["matmul_flops"]}
  batched = [i for i in matmuls.values() if i["batched"]]
  plain = [i for i in matmuls.values() if not i["batched"]]
  assert sum(i["matmul_flops"] for i in batched) == 2 * 4 * 16 * 16 * 8
  assert sum(i["matmul_flops"] for i in plain) == 2 * 4 * 16 * 8 * 8
  assert all("core" in i["op_name"] for i in batched) and not any("core" in i["op_name"] for i in plain)
  assert sum(i["matmul_flops"] for i in instructions.values()) == hlo_text.matmul_flops(hlo)
