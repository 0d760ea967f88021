"""A GGUF model as a Hugging Face directory, for serving engines that read no GGUF (vLLM).

transformers dequantizes the GGUF file; the weights are written in bfloat16 with the config
and tokenizer (chat template included), once per file sha256 under COPE_HOME/models/hf/.
The tied output head is left to the config (`tie_word_embeddings`): safetensors refuses two
names for one tensor, and the input embedding is the one the engines load.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cope.models.packaged import exclusive_lock, models_dir


def export_gguf(gguf: Path, sha256: str) -> Path:
    """The Hugging Face directory of the GGUF file `gguf` (whose sha256 is `sha256`)."""
    target = models_dir() / "hf" / f"{gguf.stem}-{sha256[:16]}"
    with exclusive_lock(target.with_name(target.name + ".lock")):
        if (target / "config.json").is_file():
            return target
        import torch
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                     dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
        weights = {name: tensor.detach().to(torch.bfloat16).contiguous()
                   for name, tensor in model.state_dict().items() if name not in tied}
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        save_file(weights, str(partial / "model.safetensors"), metadata={"format": "pt"})
        config = model.config
        config.architectures = [type(model).__name__]
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the export holds plain weights
        config.dtype = "bfloat16"
        config.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        partial.rename(target)
    return target
