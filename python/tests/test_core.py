"""The plain PyTorch decoder: cache, masks, coefficient layouts, loading and its errors."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import torch

from fopeify_torch import FopeCheckpointError, FopeConfigError, FopeUnsupportedError, KVCache, causal_mask, load_causal_lm, parse_model_config
from fopeify_torch.fope_safetensors import read_header, write_safetensors

from .helpers import random_model, tiny_config, write_folder

IDS = [3, 17, 9, 40, 2, 33, 8, 11, 25, 4]


class Decoder(unittest.TestCase):
    def test_cache_decode_equals_full_forward(self) -> None:
        for family in ("llama", "qwen2", "qwen3", "mistral"):
            model = random_model(tiny_config(family, sliding_window=4 if family == "mistral" else None))
            full = model(torch.tensor([IDS]))
            cache = KVCache()
            steps = [model(torch.tensor([IDS[:6]]), cache)] + [model(torch.tensor([[i]]), cache) for i in IDS[6:]]
            self.assertTrue(torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5), family)

    def test_sliding_window_mask(self) -> None:
        m = causal_mask(0, 5, 5, 2, torch.device("cpu"))[0, 0]
        self.assertEqual(m.int().tolist(), [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 1]])

    def test_fope_changes_the_model_and_gain_0_without_clipping_is_rope(self) -> None:
        rope = random_model(tiny_config(fope=False))
        fope_cfg = tiny_config(k=4)  # head_dim 8 -> 4 frequencies: nothing clipped
        fope = random_model(fope_cfg)
        fope.load_state_dict({**rope.state_dict(), **{k: v for k, v in fope.state_dict().items() if k.endswith("_coef")}})
        ids = torch.tensor([IDS])
        self.assertFalse(torch.allclose(fope(ids), rope(ids), atol=1e-3))
        with torch.no_grad():
            for name, b in fope.named_buffers():
                b.copy_(torch.eye(4).expand_as(b))
        self.assertTrue(torch.allclose(fope(ids), rope(ids), atol=1e-5))

    def test_flattened_position_ids_are_one_row(self) -> None:
        rotary = random_model(tiny_config()).model.rotary_emb
        pos = torch.arange(5.0)
        for a, b in zip(rotary(pos), rotary(pos[None])):
            self.assertTrue(torch.equal(a, b))

    def test_per_layer_coefficients_are_per_layer(self) -> None:
        model = random_model(tiny_config(layout="per-layer"))
        names = [n for n, _ in model.named_buffers()]
        self.assertEqual(names, ["model.layers.0.self_attn.rotary_emb.sin_coef", "model.layers.0.self_attn.rotary_emb.cos_coef", "model.layers.1.self_attn.rotary_emb.sin_coef", "model.layers.1.self_attn.rotary_emb.cos_coef"])


class Loading(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp()

    def tearDown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def folder(self, cfg: dict, **kw: object) -> str:
        write_folder(self.dir, cfg, random_model(cfg), **kw)  # type: ignore[arg-type]
        return self.dir

    def test_roundtrip(self) -> None:
        for layout in ("shared", "per-layer"):
            cfg = tiny_config("qwen2", layout=layout, sep_head=False)
            model = random_model(cfg, seed=3)
            write_folder(self.dir, cfg, model)
            loaded = load_causal_lm(self.dir)
            self.assertTrue(torch.equal(loaded(torch.tensor([IDS])), model(torch.tensor([IDS]))))

    def test_k_disagreeing_with_num_inv_freq(self) -> None:
        cfg = tiny_config()
        self.folder(cfg)
        cfg["rope_scaling"]["num_inv_freq"] = 2
        cfg["rope_parameters"]["num_inv_freq"] = 2
        with open(os.path.join(self.dir, "config.json"), "w") as fh:
            json.dump(cfg, fh)
        with self.assertRaisesRegex(FopeCheckpointError, r"model.rotary_emb.sin_coef has shape \[2, 3, 3\]: K = 3, but config.json says num_inv_freq = 2"):
            load_causal_lm(self.dir)

    def test_k_beyond_head_dim(self) -> None:
        with self.assertRaisesRegex(FopeConfigError, "num_inv_freq 5 exceeds the 4 frequencies"):
            random_model(tiny_config(k=5))

    def test_sep_head_disagreeing_with_shape(self) -> None:
        cfg = tiny_config(sep_head=False)
        self.folder(cfg)
        cfg["rope_scaling"]["fope_sep_head"] = True
        cfg["rope_parameters"]["fope_sep_head"] = True
        with open(os.path.join(self.dir, "config.json"), "w") as fh:
            json.dump(cfg, fh)
        with self.assertRaisesRegex(FopeCheckpointError, r"config.json implies \[2, 3, 3\]"):
            load_causal_lm(self.dir)

    def test_missing_coefficients(self) -> None:
        cfg = tiny_config()
        model = random_model(cfg)
        write_folder(self.dir, cfg, model)
        state = {k: v for k, v in model.state_dict().items() if not k.endswith("_coef")}
        write_safetensors(os.path.join(self.dir, "model.safetensors"), state)
        with self.assertRaisesRegex(FopeCheckpointError, "no FoPE coefficients.*never regenerates"):
            load_causal_lm(self.dir)

    def test_unknown_base_family(self) -> None:
        for cfg in (tiny_config(fope_base_model_type="gemma"), tiny_config(model_type="gemma_fope", fope_base_model_type=None)):
            cfg = {k: v for k, v in cfg.items() if v is not None}
            with self.assertRaisesRegex(FopeUnsupportedError, "unknown FoPE base family 'gemma'"):
                parse_model_config(cfg)

    def test_runner_reports_missing_file_and_bad_shape(self) -> None:
        cfg = tiny_config()
        self.folder(cfg)
        runner = os.path.join(self.dir, "fope_runner.py")
        ok = subprocess.run([sys.executable, runner, "logits", "--ids", "1,2,3"], capture_output=True, text=True)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertEqual(len(json.loads(ok.stdout)["logits"]), 3)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "__pycache__")))
        os.remove(os.path.join(self.dir, "fope_core.py"))
        bad = subprocess.run([sys.executable, runner, "logits", "--ids", "1"], capture_output=True, text=True)
        self.assertEqual(bad.returncode, 3)
        self.assertRegex(bad.stderr, r"^error\[BAD_CONFIG\]: .* lacks fope_core.py")

    def test_safetensors_dtypes(self) -> None:
        path = os.path.join(self.dir, "t.safetensors")
        ts = {"a": torch.randn(3, 2), "b": torch.randn(4).to(torch.bfloat16), "c": torch.randn(2, 2).half(), "e": torch.zeros(0)}
        write_safetensors(path, ts, {"format": "pt"})
        header = read_header(path)
        self.assertEqual({k: (v.dtype, v.shape) for k, v in header.items()}, {"a": ("F32", [3, 2]), "b": ("BF16", [4]), "c": ("F16", [2, 2]), "e": ("F32", [0])})
        with open(path, "r+b") as fh:
            fh.truncate(os.path.getsize(path) - 2)
        with self.assertRaisesRegex(FopeCheckpointError, "do not fit"):
            read_header(path)


if __name__ == "__main__":
    unittest.main()
