"""The transformers remote code (configuration_fope.py / modeling_fope.py) on folders this test writes.

Runs only where `transformers` is importable (not on the Debian build machines: no PyPI there, so it is
skipped and proves nothing there); scripts/gpu-check-bridge.py runs the same checks on fopeify's own
converted folders with transformers 5.x.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import unittest

import torch

from .helpers import random_model, tiny_config, write_folder

HAVE_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
IDS = [3, 17, 9, 40, 2, 33, 8, 11]


def load(folder: str, **kw: object) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32, **kw)
    except TypeError:  # transformers 4.x names it torch_dtype
        return AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, torch_dtype=torch.float32, **kw)


@unittest.skipUnless(HAVE_TRANSFORMERS, "transformers is not importable by this python; the remote-code glue is unverified here")
class RemoteCode(unittest.TestCase):
    def setUp(self) -> None:
        self.root = tempfile.mkdtemp()

    def tearDown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def test_logits_and_generation_match_the_core(self) -> None:
        for i, (family, layout, sep) in enumerate([("llama", "shared", True), ("qwen2", "per-layer", False), ("qwen3", "shared", True), ("mistral", "shared", True)]):
            cfg = tiny_config(family, layout=layout, sep_head=sep, **({"sliding_window": 4} if family == "mistral" else {}))
            core = random_model(cfg, seed=i)
            folder = os.path.join(self.root, f"m{i}")
            write_folder(folder, cfg, core)
            for impl in ("eager", "sdpa"):
                hf = load(folder, attn_implementation=impl).eval()
                with torch.no_grad():
                    got = hf(torch.tensor([IDS])).logits
                    want = core(torch.tensor([IDS]))
                self.assertLess(float((got - want).abs().max() / want.abs().max()), 1e-4, f"{family} {impl}")
                out = hf.generate(torch.tensor([IDS]), max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
                self.assertEqual(out[0, len(IDS):].tolist(), core.generate_greedy(IDS, 8), f"{family} {impl}")

    def test_bad_coefficient_shape_is_an_error(self) -> None:
        cfg = tiny_config()
        write_folder(self.root, cfg, random_model(cfg))
        cfg["rope_scaling"]["num_inv_freq"] = cfg["rope_parameters"]["num_inv_freq"] = 2
        with open(os.path.join(self.root, "config.json"), "w") as fh:
            json.dump(cfg, fh)
        with self.assertRaisesRegex(ValueError, "num_inv_freq = 2"):
            load(self.root)

    def test_without_trust_remote_code_it_refuses(self) -> None:
        from transformers import AutoModelForCausalLM

        cfg = tiny_config()
        write_folder(self.root, cfg, random_model(cfg))
        with self.assertRaises(Exception):
            AutoModelForCausalLM.from_pretrained(self.root, trust_remote_code=False)


if __name__ == "__main__":
    unittest.main()
