"""The rotary math against the reference vectors of fope.md and rope-scaling.md."""
from __future__ import annotations

import math
import unittest

import torch

from fopeify_torch.fope_rope import apply_grouped_rotary, apply_rotary, default_inv_freq, fope_cos_sin, fope_kept_count, rope_cos_sin, rope_frequencies
from fopeify_torch.fope_spec import RopeSpec


class WorkedExample(unittest.TestCase):
    """fope.md section 9: D=8, theta=1e4, L=64, one KV head, K=2."""

    def setUp(self) -> None:
        self.inv = default_inv_freq(10000.0, 8)
        self.sin = torch.tensor([[1.0, 0.1], [0.2, 1.0]])
        self.cos = torch.tensor([[1.0, -0.1], [0.0, 1.0]])
        self.x = torch.arange(1.0, 9.0)

    def rotate(self, t: float, sin_pad: int = 1) -> torch.Tensor:
        c, s = fope_cos_sin(torch.tensor([[t]]), self.inv, self.sin, self.cos, sin_pad)
        return apply_rotary(self.x, c[0, 0, 0], s[0, 0, 0])

    def test_kept_count(self) -> None:
        self.assertEqual(self.inv, [1.0, 0.10000000149011612, 0.009999999776482582, 0.0010000000474974513])
        self.assertEqual(fope_kept_count(self.inv, 64), 2)

    def test_position_0(self) -> None:
        c, s = fope_cos_sin(torch.tensor([[0.0]]), self.inv, self.sin, self.cos)
        self.assertTrue(torch.allclose(c[0, 0, 0], torch.tensor([1, 0.9, 1, 1, 1, 0.9, 1, 1.0])))
        self.assertTrue(torch.allclose(s[0, 0, 0], torch.tensor([0, 0, 1, 1, 0, 0, 1, 1.0])))
        self.assertTrue(torch.allclose(self.rotate(0), torch.tensor([1, 1.8, -4, -4, 5, 5.4, 10, 12.0])))

    def test_position_3(self) -> None:
        want = torch.tensor([-1.9911127, 0.2508781, -4, -4, -4.7497387, 6.945279, 10, 12])
        self.assertTrue(torch.allclose(self.rotate(3), want, atol=1e-5))

    def test_sin_pad_0(self) -> None:
        want = torch.tensor([-1.9911127, 0.2508781, 3, 4, -4.7497387, 6.945279, 7, 8])
        self.assertTrue(torch.allclose(self.rotate(3, sin_pad=0), want, atol=1e-5))


class Variants(unittest.TestCase):
    def test_yarn_vectors(self) -> None:
        cases = [  # dim, base, Lo, factor, attention, (index, inv)
            (128, 1e4, 4096, 16, 1.277259, (33, 0.0046004355), 7.2173874e-06),
            (64, 1e5, 8192, 4, 1.138629, (15, 0.0028322398), 3.5825314e-06),
            (64, 1e6, 32768, 4, 1.138629, (15, 0.0010266177), 3.8498163e-07),
        ]
        for dim, base, lo, factor, attention, (i, mid), last in cases:
            spec = RopeSpec("yarn", base, dim, lo * factor, {"factor": factor, "original_max_position_embeddings": lo})
            inv, af = rope_frequencies(spec)
            self.assertAlmostEqual(af, attention, places=5)
            self.assertEqual(inv[0], 1.0)
            self.assertAlmostEqual(inv[i] / mid, 1.0, places=6)
            self.assertAlmostEqual(inv[-1] / last, 1.0, places=6)

    def test_llama3_vector(self) -> None:
        spec = RopeSpec("llama3", 5e5, 64, 131072, {"factor": 32, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192})
        inv, af = rope_frequencies(spec)
        self.assertEqual(af, 1.0)
        self.assertEqual(inv[0], 1.0)
        self.assertAlmostEqual(inv[16] / 4.2955680e-04, 1.0, places=6)
        self.assertAlmostEqual(inv[31] / 9.4183067e-08, 1.0, places=6)

    def test_identity_coefficients_without_clipping_are_rope(self) -> None:
        inv = default_inv_freq(10000.0, 16)
        eye = torch.eye(8)
        pos = torch.tensor([[0.0, 1.0, 5.0, 40.0]])
        fc, fs = fope_cos_sin(pos, inv, eye, eye)
        rc, rs = rope_cos_sin(pos, inv)
        self.assertTrue(torch.equal(fc, rc) and torch.equal(fs, rs))
        fc, fs = fope_cos_sin(pos, inv, eye, eye, attention_factor=1.3)
        rc, rs = rope_cos_sin(pos, inv, 1.3)
        self.assertTrue(torch.allclose(fc, rc, rtol=1e-6, atol=1e-7) and torch.allclose(fs, rs, rtol=1e-6, atol=1e-7))
        self.assertFalse(torch.allclose(fc, rope_cos_sin(pos, inv)[0]))

    def test_query_heads_use_their_kv_head_table(self) -> None:
        torch.manual_seed(0)
        q, k = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 3, 8)
        cos, sin = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 8)
        q2, k2 = apply_grouped_rotary(q, k, cos, sin)
        for h in range(4):
            g = h // 2
            self.assertTrue(torch.allclose(q2[0, h], apply_rotary(q[0, h], cos[0, g], sin[0, g])))
        self.assertTrue(torch.allclose(k2[0, 1], apply_rotary(k[0, 1], cos[0, 1], sin[0, 1])))


if __name__ == "__main__":
    unittest.main()
