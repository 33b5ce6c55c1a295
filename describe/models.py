"""Find the vision LLM before vLLM starts, so a missing model is one line instead of a traceback.

vLLM resolves a model name itself, but only after seconds of start-up, and a missing model then ends
in a long traceback about connecting to the hub. `resolve` looks where vLLM would look (a local folder,
then the Hugging Face cache, then the hub unless HF_HUB_OFFLINE is set) and either says where the model
will come from or raises `ModelNotFound` with which model, where vfr looked, and what to do.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf")
TRY_TINY = "or try the pipeline on a CPU with `vfr dev tiny-vlm DIR` and `--model DIR`"


class ModelNotFound(ValueError):
    """The model cannot be loaded from here; the message is one line: which, where vfr looked, what to do."""


@dataclass(frozen=True)
class ResolvedModel:
    name: str      # what vLLM is given (unchanged: a folder or a hub name)
    source: str    # where it will come from, for people: "local folder", "Hugging Face cache …", …


def resolve(model: str) -> ResolvedModel:
    """Where vLLM will load `model` from, or `ModelNotFound`."""
    path = Path(model).expanduser()
    if path.exists():
        return ResolvedModel(model, f"local folder {_check_folder(path)}")
    if _looks_like_path(model):
        raise ModelNotFound(f"no model folder at {path.absolute()}: pass --model with the folder that holds "
                            f"config.json and the weights, or a Hugging Face name such as "
                            f"Qwen/Qwen2.5-VL-3B-Instruct, {TRY_TINY}")
    if os.environ.get("VLLM_USE_MODELSCOPE", "").lower() in ("1", "true"):
        return ResolvedModel(model, "ModelScope (not checked by vfr)")
    return _from_hub(model)


def _check_folder(path: Path) -> Path:
    folder = path.resolve()
    if folder.is_file():
        if folder.suffix == ".gguf":
            return folder
        raise ModelNotFound(f"--model {path} is a file, not a model folder: pass the folder that holds "
                            f"config.json and the weights, {TRY_TINY}")
    if not (folder / "config.json").is_file():
        raise ModelNotFound(f"{folder} has no config.json, so it is not a Hugging Face model folder: pass the "
                            f"folder that holds config.json and the weights, {TRY_TINY}")
    if not any(next(folder.glob(p), None) for p in WEIGHTS):
        raise ModelNotFound(f"{folder} has config.json but no weights ({', '.join(WEIGHTS[:2])}): the copy or "
                            "download is incomplete; copy or download the model again")
    return folder


def _looks_like_path(model: str) -> bool:
    """Hub names are `name` or `org/name`; anything else (absolute, ./, ~, a/b/c) can only be a folder."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if os.path.isabs(model) or model.startswith((".", "~")) or "\\" in model or model.count("/") > 1:
        return True
    try:
        validate_repo_id(model)
    except HFValidationError:
        return True
    return False


def _from_hub(repo: str) -> ResolvedModel:
    from huggingface_hub import constants, model_info, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    cache = constants.HF_HUB_CACHE
    try:
        snapshot: Path | None = Path(snapshot_download(repo, local_files_only=True, cache_dir=cache))
    except (OSError, ValueError):   # LocalEntryNotFoundError: no snapshot of it in the cache
        snapshot = None
    if snapshot is not None and (snapshot / "config.json").is_file():
        if not any(next(snapshot.glob(p), None) for p in WEIGHTS):
            raise ModelNotFound(f"model {repo} is in the Hugging Face cache ({snapshot}) without its weights: "
                                f"the download is incomplete; run `hf download {repo}` again")
        return ResolvedModel(repo, f"Hugging Face cache {snapshot}")
    fix = (f"download it once where the hub is reachable (`hf download {repo}`; HF_HOME chooses the cache), "
           f"pass --model PATH to a local model folder, {TRY_TINY}")
    if constants.HF_HUB_OFFLINE:
        raise ModelNotFound(f"model {repo} is not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE is set, "
                            f"so vfr did not look on the hub; {fix}")
    try:
        model_info(repo, timeout=15)
    except RepositoryNotFoundError:
        raise ModelNotFound(f"model {repo} is not in the Hugging Face cache ({cache}) and the hub has no such "
                            "model (or it is private: log in with `hf auth login`); check the name, pass --model "
                            f"PATH to a local model folder, {TRY_TINY}") from None
    except HfHubHTTPError:
        return ResolvedModel(repo, f"Hugging Face hub (vfr could not check it; vLLM downloads into {cache})")
    except Exception as e:  # noqa: BLE001 - any transport failure: the model cannot be downloaded from here
        why = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise ModelNotFound(f"model {repo} is not in the Hugging Face cache ({cache}) and the hub cannot be "
                            f"reached ({why}); {fix}") from None
    return ResolvedModel(repo, f"Hugging Face hub (vLLM downloads it into {cache} first)")


def engine_failure(model: str, exc: BaseException) -> str:
    """One line for an engine that would not start: vLLM's own reason, and where to look next."""
    from huggingface_hub.errors import GatedRepoError

    chain, e = [], exc
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if any(isinstance(x, GatedRepoError) for x in chain):
        return (f"model {model} is gated on the Hugging Face hub: accept its terms at https://huggingface.co/{model} "
                "and log in with `hf auth login`, or pass --model PATH to a local model folder")
    text = next((str(x) for x in chain if str(x).strip()), "")
    first = text.strip().splitlines()[0][:300] if text.strip() else ""
    return (f"vLLM could not start {model}: {type(exc).__name__}: {first or 'no message'} (vLLM's log lines "
            "above say more; check --max-model-len, --gpu-memory-utilization and --dtype; VFR_DEBUG=1 shows "
            "the traceback)")
