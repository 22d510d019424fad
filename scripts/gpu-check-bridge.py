#!/usr/bin/env python3
"""Check fopeify's FoPE folders under transformers (no Node needed): for each fixture folder made by
scripts/make-bridge-fixtures.mjs, load it with

    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32)

on the given device, compare its logits with fopeify's saved ones (max |a-b| / max |b| <= tolerance) for
each attention implementation, compare 20 greedy tokens with the saved `fopeify generate` output, run the
folder's plain PyTorch core (fope_runner.py) on the device too, and check that a bfloat16 load keeps the
FoPE coefficients in float32 and that loading without trust_remote_code refuses. Prints a table; exits 1
when any check fails.

    python3 scripts/gpu-check-bridge.py <fixtures-dir> [--device cuda] [--attn eager,sdpa] [--json results.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

import torch


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def load(folder: str, device: str, dtype: torch.dtype, attn: Optional[str], trust: bool = True) -> Any:
    from transformers import AutoModelForCausalLM

    kw: Dict[str, Any] = {"trust_remote_code": trust}
    if attn:
        kw["attn_implementation"] = attn
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kw)
    except TypeError:  # transformers 4.x
        model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype, **kw)
    return model.to(device).eval()


def check_folder(folder: str, device: str, attns: List[str], tol: float) -> List[Dict[str, Any]]:
    with open(os.path.join(folder, "expected.json"), encoding="utf-8") as fh:
        exp = json.load(fh)
    want = torch.tensor(exp["logits"], dtype=torch.float32)
    rows: List[Dict[str, Any]] = []
    for attn in attns:
        row: Dict[str, Any] = {"variant": exp["variant"], "check": f"transformers {attn}"}
        try:
            t0 = time.time()
            model = load(folder, device, torch.float32, attn)
            with torch.no_grad():
                got = model(torch.tensor([exp["ids"]], device=device)).logits[0].float().cpu()
            row["logits_rel_err"] = rel_err(got, want)
            model.generation_config.eos_token_id = None
            model.generation_config.pad_token_id = 0
            prompt = torch.tensor([exp["prompt_ids"]], device=device)
            out = model.generate(prompt, max_new_tokens=len(exp["generated"]), do_sample=False)
            tokens = out[0, prompt.shape[1]:].tolist()
            row["greedy_match"] = f"{sum(int(a == b) for a, b in zip(tokens, exp['generated']))}/{len(exp['generated'])}"
            row["ok"] = row["logits_rel_err"] <= tol and tokens == exp["generated"]
            row["seconds"] = round(time.time() - t0, 2)
        except Exception as err:  # a table row per failure, not a stop
            row.update(ok=False, error=f"{type(err).__name__}: {err}")
        rows.append(row)
    # The folder's plain PyTorch core (what `fopeify logits --engine torch` runs), on the device.
    row = {"variant": exp["variant"], "check": "fope_runner.py (core)"}
    r = subprocess.run([sys.executable, os.path.join(folder, "fope_runner.py"), "logits", "--ids", ",".join(map(str, exp["ids"])), "--device", device], capture_output=True, text=True)
    if r.returncode == 0:
        row["logits_rel_err"] = rel_err(torch.tensor(json.loads(r.stdout)["logits"]), want)
        row["ok"] = row["logits_rel_err"] <= tol
    else:
        row.update(ok=False, error=r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"status {r.returncode}")
    rows.append(row)
    # bfloat16 weights keep float32 coefficients; no trust_remote_code is refused (never silent RoPE).
    row = {"variant": exp["variant"], "check": "bf16 load / no trust_remote_code"}
    try:
        model = load(folder, device, torch.bfloat16, None)
        coef = [b.dtype for n, b in model.named_buffers() if n.endswith(("sin_coef", "cos_coef"))]
        row["coef_dtypes"] = sorted(set(str(d) for d in coef))
        try:
            load(folder, device, torch.float32, None, trust=False)
            refused = False
        except Exception:
            refused = True
        row["refused_without_trust"] = refused
        row["ok"] = bool(coef) and all(d == torch.float32 for d in coef) and refused
    except Exception as err:
        row.update(ok=False, error=f"{type(err).__name__}: {err}")
    rows.append(row)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fixtures")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--attn", default="eager,sdpa", help="attention implementations to run (comma-separated)")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    import transformers

    folders = sorted(os.path.join(args.fixtures, d) for d in os.listdir(args.fixtures) if os.path.isfile(os.path.join(args.fixtures, d, "expected.json")))
    if not folders:
        print(f"no fixture folders (with expected.json) in {args.fixtures}", file=sys.stderr)
        return 2
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    rows: List[Dict[str, Any]] = []
    for folder in folders:
        rows.extend(check_folder(folder, args.device, [a for a in args.attn.split(",") if a], args.tolerance))
    print(f"{'variant':32} {'check':34} {'logits rel err':>14} {'greedy 20':>9}  ok")
    for r in rows:
        err = f"{r['logits_rel_err']:.2e}" if "logits_rel_err" in r else ""
        extra = r.get("error") or (f"coef {r['coef_dtypes']}, refused w/o trust: {r['refused_without_trust']}" if "coef_dtypes" in r else "")
        print(f"{r['variant']:32} {r['check']:34} {err:>14} {r.get('greedy_match', ''):>9}  {'yes' if r['ok'] else 'NO'}  {extra}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)
    failed = [r for r in rows if not r["ok"]]
    print(f"{len(rows) - len(failed)}/{len(rows)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
