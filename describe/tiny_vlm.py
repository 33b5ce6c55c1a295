"""Build a tiny random-weight Qwen2.5-VL that vLLM loads: offline, deterministic from a seed, < 2 MB.

It describes nothing (random weights), but it exercises the whole real path: the image processor
(image-token counts scale with image size), the vision tower, mrope, structured decoding and the
tokenizer's chat template. Tests, benchmarks and `vfr dev tiny-vlm` (an install check) use it.

Sizes follow what vLLM's CPU backend accepts: attention head size 32, one KV head,
`mrope_section` summing to head_size / 2.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

# Qwen2-VL's chat template (images and text parts in one user message).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_WORDS = (
    "a the two three red blue green white black wooden metal glass small large dog cat person car bus "
    "tree street beach kitchen table chair sitting on next to under holding walking indoor outdoor day "
    "night sunny cloudy photo close-up wide shot caption objects name count colors materials size "
    "states position relations subject predicate object actions setting scene indoor time_of_day "
    "weather visible_text style left right center top bottom foreground background true false null"
).split()

TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, max_position_embeddings=32768, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "mrope_section": [4, 6, 6], "rope_theta": 1_000_000.0})
VISION = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=64,
              patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
              fullatt_block_indexes=[1], in_channels=3)
MAX_PIXELS = 224 * 224
MIN_PIXELS = 28 * 28


def _corpus(seed: int, lines: int = 400) -> list[str]:
    """Deterministic training lines: scene words and JSON fragments, so BPE learns useful merges."""
    from vfr.describe.prompt import SYSTEM, USER

    rng = random.Random(seed)
    out = [SYSTEM, *USER.splitlines()] * 20  # so the prompt tokenizes to few tokens (fast prefill)
    for _ in range(lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
        out.append(" ".join(words))
        out.append(json.dumps({rng.choice(_WORDS): [rng.choice(_WORDS), rng.randint(0, 99)]}))
    return out


def build_tokenizer(seed: int, vocab_size: int = 1024):
    """A byte-level BPE tokenizer with Qwen's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:], model_max_length=32768)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build(out_dir: str | Path, seed: int = 0) -> Path:
    """Write config, safetensors weights, tokenizer and processor to `out_dir`; returns it."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(seed)
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab = -(-len(tok) // 64) * 64  # pad the embedding to a multiple of 64
    config = Qwen2_5_VLConfig(
        text_config=dict(TEXT, vocab_size=vocab, bos_token_id=ids["<|endoftext|>"],
                         eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]),
        vision_config=VISION,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    config.eos_token_id = ids["<|im_end|>"]
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    with torch.no_grad():  # a larger init spreads the logits, so outputs vary with the image
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.2)
    model.save_pretrained(out, safe_serialization=True)
    pixels = dict(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, patch_size=14, merge_size=2, temporal_patch_size=2)
    image_processor = Qwen2VLImageProcessorPil(**pixels)
    video_processor = Qwen2VLVideoProcessor(**pixels)
    proc = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
                               chat_template=CHAT_TEMPLATE)
    proc.save_pretrained(out)
    gen = {"eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"], "do_sample": False}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    (out / "README.md").write_text(
        f"Tiny random-weight Qwen2.5-VL built by `vfr dev tiny-vlm` (seed {seed}). For tests and install "
        "checks only: it sees images but its words are random.\n")
    return out


def fingerprint(model_dir: str | Path) -> str:
    """sha256 over the weights and tokenizer: equal seeds must give equal fingerprints."""
    h = hashlib.sha256()
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        p = Path(model_dir) / name
        if p.exists():
            h.update(name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()
