"""Run a FoPE model folder's own Python code from the command line (what `fopeify logits --engine torch` calls):

    python3 <folder>/fope_runner.py logits --ids 1,2,3         # {"logits": [[...], ...]}, like fopeify --json
    python3 <folder>/fope_runner.py generate --ids 1,2,3 --max-new-tokens 20   # {"ids": [...]} greedy
    python3 <folder>/fope_runner.py check                     # loads the folder, prints what it is

Needs only torch (>= 1.13). Errors about the folder print one line `error[CODE]: message` on stderr and
exit with status 3. Only the standard library is imported at the top: the folder's other files are
imported after checking they exist, so a missing file is a clear error, not a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import types
from typing import List, Optional, Sequence

REMOTE_CODE_FILES = (
    "configuration_fope.py",
    "modeling_fope.py",
    "fope_spec.py",
    "fope_rope.py",
    "fope_core.py",
    "fope_safetensors.py",
    "fope_checkpoint.py",
    "fope_runner.py",
)
"""The Python files every FoPE folder fopeify writes carries (the remote code and the plain PyTorch core)."""

ERROR_EXIT = 3


def missing_files(folder: str) -> List[str]:
    return [f for f in REMOTE_CODE_FILES if not os.path.isfile(os.path.join(folder, f))]


def fail(code: str, message: str) -> int:
    sys.stderr.write(f"error[{code}]: {' '.join(message.split())}\n")
    return ERROR_EXIT


def parse_ids(text: str) -> List[int]:
    try:
        ids = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        ids = []
    if not ids or any(i < 0 for i in ids):
        raise ValueError(f"--ids must be a comma-separated list of integers >= 0 (got {text!r})")
    return ids


def _format_row(row: Sequence[float]) -> str:
    return "[" + ", ".join(repr(float(x)) for x in row) + "]"


def main(argv: Optional[Sequence[str]] = None, folder: Optional[str] = None) -> int:
    parser = argparse.ArgumentParser(prog="fope_runner.py", description="run this FoPE model folder with plain PyTorch")
    parser.add_argument("command", choices=["logits", "generate", "check"])
    parser.add_argument("--model", default=folder or os.path.dirname(os.path.abspath(__file__)), help="model folder (default: this file's folder)")
    parser.add_argument("--ids", default="", help="token ids, comma-separated")
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", "float64"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    import torch

    from .fope_checkpoint import load_causal_lm
    from .fope_spec import FopeError

    missing = missing_files(args.model)
    if missing:
        return fail("BAD_CONFIG", f"{args.model} lacks {', '.join(missing)} (the folder's PyTorch code); rewrite the folder with fopeify (convert, or `fopeify push`, which refreshes the files)")
    try:
        model = load_causal_lm(args.model, dtype=getattr(torch, args.dtype), device=args.device)
        spec = model.spec
        if args.command == "check":
            layout = "per-layer" if hasattr(model.model.layers[0].self_attn, "rotary_emb") else ("shared" if model.model.rotary_emb.has_coefficients else None)
            print(json.dumps({"family": spec.family, "model_type": spec.model_type, "fope": spec.fope is not None, "layout": layout, "torch": torch.__version__}))
            return 0
        ids = parse_ids(args.ids)
        bad = [i for i in ids if i >= spec.vocab_size]
        if bad:
            return fail("BAD_ARGUMENT", f"token id {bad[0]} is outside the vocabulary (size {spec.vocab_size})")
        with torch.no_grad():
            if args.command == "logits":
                logits = model(torch.tensor([ids], dtype=torch.long, device=args.device))[0].to(torch.float32).cpu()
                sys.stdout.write('{"logits": [' + ",\n".join(_format_row(r.tolist()) for r in logits) + "]}\n")
            else:
                out = model.generate_greedy(ids, args.max_new_tokens)
                sys.stdout.write(json.dumps({"ids": out}) + "\n")
        return 0
    except FopeError as err:
        return fail(err.code, err.message)
    except ValueError as err:
        return fail("BAD_ARGUMENT", str(err))


def _bootstrap() -> int:
    """Run as a script: import this folder as a package (its files use relative imports, as transformers
    loads them), without writing __pycache__ into the model folder."""
    here = os.path.dirname(os.path.abspath(__file__))
    missing = missing_files(here)
    if missing:
        return fail("BAD_CONFIG", f"{here} lacks {', '.join(missing)} (the folder's PyTorch code); rewrite the folder with fopeify (convert, or `fopeify push`, which refreshes the files)")
    sys.dont_write_bytecode = True
    name = "fopeify_model_folder"
    pkg = types.ModuleType(name)
    pkg.__path__ = [here]  # type: ignore[attr-defined]
    sys.modules[name] = pkg
    runner = importlib.import_module(f"{name}.fope_runner")
    return int(runner.main(sys.argv[1:], folder=here))


if __name__ == "__main__":
    sys.exit(_bootstrap())
